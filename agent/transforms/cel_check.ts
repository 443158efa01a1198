import type { CelEnv, CelType } from '@bufbuild/cel';
import type { Expr } from '@bufbuild/cel-spec/cel/expr/syntax_pb.js';
import { closest } from '../config/did_you_mean.ts';

/**
 * A static check of a parsed CEL expression against the record's variables and the environment's
 * functions, so `validate` reports what would otherwise fail on every record: undeclared names,
 * unknown functions, calls no overload takes, field access on a scalar, a condition that is not a
 * bool. @bufbuild/cel's own checker (not exported in 0.6) handles constants and identifiers only.
 *
 * Types are coarse on purpose: `dyn` (anything: `body`, map values, JSON numbers) matches every
 * overload, so only what is certain is reported, as CEL's checker does with dyn.
 */
export type Kind = 'dyn' | 'bool' | 'int' | 'uint' | 'double' | 'string' | 'bytes' | 'null' | 'timestamp' | 'duration' | 'type' | 'list' | 'map';

export interface CheckProblem {
  message: string;
  /** Offset in the expression text, when the parser recorded it. */
  offset: number | undefined;
}

export class CheckFailed extends Error {
  readonly offset: number | undefined;
  constructor(message: string, offset: number | undefined) {
    super(message);
    this.offset = offset;
  }
}

const TYPE_NAMES = new Set(['int', 'uint', 'double', 'bool', 'string', 'bytes', 'list', 'map', 'null_type', 'type', 'dyn']);
/** Operators the planner evaluates itself (not in the function registry). */
const LOGICAL = new Set(['_&&_', '_||_', '@not_strictly_false', '__not_strictly_false__']);
const NUMERIC = new Set<Kind>(['int', 'uint', 'double']);

export function kindOf(t: CelType): Kind {
  switch (t.kind) {
    case 'list':
      return 'list';
    case 'map':
      return 'map';
    case 'object':
      if (t.name === 'google.protobuf.Timestamp') return 'timestamp';
      if (t.name === 'google.protobuf.Duration') return 'duration';
      return 'dyn';
    default:
      return t.name === 'null_type' ? 'null' : (t.name as Kind);
  }
}

export class Checker {
  private readonly env: CelEnv;
  private readonly vars: ReadonlyMap<string, Kind>;
  private readonly positions: Record<string, number>;
  private scopes: Map<string, Kind>[] = [];
  /** Top-level variables the expression reads (comprehension variables excluded). */
  readonly uses = new Set<string>();

  constructor(env: CelEnv, vars: ReadonlyMap<string, Kind>, positions: Record<string, number>) {
    this.env = env;
    this.vars = vars;
    this.positions = positions;
  }

  check(e: Expr): Kind {
    const k = e.exprKind;
    switch (k.case) {
      case 'constExpr':
        return constKind(k.value.constantKind.case);
      case 'identExpr':
        return this.ident(k.value.name, e);
      case 'selectExpr': {
        const operand = k.value.operand!;
        const t = this.check(operand);
        if (t !== 'dyn' && t !== 'map') this.fail(e, `type '${t}' has no fields (selecting .${k.value.field})`);
        return k.value.testOnly ? 'bool' : 'dyn';
      }
      case 'callExpr':
        return this.call(e, k.value.function, k.value.target, k.value.args);
      case 'listExpr':
        for (const el of k.value.elements) this.check(el);
        return 'list';
      case 'structExpr':
        if (k.value.messageName) this.fail(e, `message construction (${k.value.messageName}{...}) is not supported here`);
        for (const entry of k.value.entries) {
          if (entry.keyKind.case === 'mapKey') this.check(entry.keyKind.value);
          if (entry.value) this.check(entry.value);
        }
        return 'map';
      case 'comprehensionExpr': {
        const c = k.value;
        const range = this.check(c.iterRange!);
        if (range !== 'dyn' && range !== 'list' && range !== 'map') this.fail(c.iterRange!, `cannot iterate over type '${range}'`);
        const accu = this.check(c.accuInit!);
        const scope = new Map<string, Kind>([[c.accuVar, accu === 'list' || accu === 'map' ? accu : 'dyn']]);
        scope.set(c.iterVar, 'dyn');
        if (c.iterVar2) scope.set(c.iterVar2, 'dyn');
        this.scopes.push(scope);
        try {
          this.check(c.loopCondition!);
          this.check(c.loopStep!);
          return this.check(c.result!);
        } finally {
          this.scopes.pop();
        }
      }
      default:
        this.fail(e, 'unsupported expression');
    }
  }

  private ident(name: string, e: Expr): Kind {
    for (let i = this.scopes.length - 1; i >= 0; i--) {
      const t = this.scopes[i]!.get(name);
      if (t !== undefined) return t;
    }
    const v = this.vars.get(name);
    if (v !== undefined) {
      this.uses.add(name);
      return v;
    }
    if (TYPE_NAMES.has(name)) return 'type';
    const near = closest(name, [...this.vars.keys()]);
    this.fail(e, `undeclared reference to '${name}'${near ? ` (did you mean ${near}?)` : ` (the record's fields are ${[...this.vars.keys()].join(', ')})`}`);
  }

  private call(e: Expr, fn: string, target: Expr | undefined, args: readonly Expr[]): Kind {
    // `strings.quote(x)`: a namespaced function, not a method of a variable named `strings`.
    if (target?.exprKind.case === 'identExpr' && !this.isVariable(target.exprKind.value.name)) {
      const qualified = `${target.exprKind.value.name}.${fn}`;
      if (this.env.funcs.find(qualified)) return this.call(e, qualified, undefined, args);
    }
    const targetKind = target ? this.check(target) : undefined;
    const argKinds = args.map((a) => this.check(a));
    if (LOGICAL.has(fn)) {
      argKinds.forEach((t, i) => {
        if (t !== 'bool' && t !== 'dyn') this.fail(args[i]!, `${operatorName(fn)} takes bools, got '${t}'`);
      });
      return 'bool';
    }
    if (fn === '_?_:_') {
      const [cond, a, b] = argKinds;
      if (cond !== 'bool' && cond !== 'dyn') this.fail(args[0]!, `the condition of ?: must be a bool, got '${cond}'`);
      return a === b ? a! : 'dyn';
    }
    if (fn === '_[_]' || fn === '_[?_]') {
      const [container, key] = argKinds;
      if (container === 'list' && key !== 'int' && key !== 'uint' && key !== 'dyn') this.fail(args[1]!, `a list index must be an int, got '${key}'`);
      if (container !== 'dyn' && container !== 'list' && container !== 'map') this.fail(e, `type '${container}' cannot be indexed`);
      return 'dyn';
    }
    if ((fn === '_==_' || fn === '_!=_') && !comparable(argKinds[0]!, argKinds[1]!)) {
      this.fail(e, `found no matching overload for '${fn}' applied to (${argKinds.join(', ')}): values of these types are never equal`);
    }
    const group = this.env.funcs.find(fn);
    if (!group) {
      const names = new Set<string>();
      for (const f of this.env.funcs) names.add(f.name);
      const near = closest(fn, [...names]);
      this.fail(e, `unknown function '${fn}'${near ? ` (did you mean ${near}?)` : ''}`);
    }
    const results = new Set<Kind>();
    let named = false;
    for (const f of group) {
      if ((f.target === undefined) !== (targetKind === undefined)) continue;
      named = true;
      if (f.arguments.length !== argKinds.length) continue;
      if (f.target && !matches(targetKind!, kindOf(f.target))) continue;
      if (!f.arguments.every((p, i) => matches(argKinds[i]!, kindOf(p)))) continue;
      results.add(kindOf(f.result));
    }
    if (results.size === 0) {
      const shape = `${targetKind ? `${targetKind}.` : ''}${fn}(${argKinds.join(', ')})`;
      if (!named) this.fail(e, target ? `'${fn}' is a function, not a method: write ${fn}(x)` : `'${fn}' is a method: write x.${fn}(...)`);
      this.fail(e, `found no matching overload for ${shape}`);
    }
    return results.size === 1 ? [...results][0]! : 'dyn';
  }

  private isVariable(name: string): boolean {
    return this.vars.has(name) || this.scopes.some((s) => s.has(name));
  }

  private fail(e: Expr, message: string): never {
    throw new CheckFailed(message, this.positions[String(e.id)]);
  }
}

function matches(arg: Kind, param: Kind): boolean {
  return arg === 'dyn' || param === 'dyn' || arg === param;
}

function comparable(a: Kind, b: Kind): boolean {
  if (a === 'dyn' || b === 'dyn' || a === b || a === 'null' || b === 'null') return true;
  return NUMERIC.has(a) && NUMERIC.has(b);
}

function constKind(c: string | undefined): Kind {
  switch (c) {
    case 'boolValue':
      return 'bool';
    case 'int64Value':
      return 'int';
    case 'uint64Value':
      return 'uint';
    case 'doubleValue':
      return 'double';
    case 'stringValue':
      return 'string';
    case 'bytesValue':
      return 'bytes';
    case 'nullValue':
      return 'null';
    case 'durationValue':
      return 'duration';
    case 'timestampValue':
      return 'timestamp';
    default:
      return 'dyn';
  }
}

function operatorName(fn: string): string {
  return fn === '_&&_' ? '&&' : fn === '_||_' ? '||' : fn;
}
