/**
 * The pipeline graph as the config draws it: sources -> transforms -> outputs, by `inputs`. Pure
 * functions over the config, shared by the schema (what `validate` reports), the pipeline (who
 * reads what) and whoever draws the graph (the status page, `top`).
 *
 * An input names a source, a transform, or one route of a `route` transform (`<name>.<route>`,
 * `<name>._unmatched`): these are the graph's ports.
 */

/** The part of the config the graph is made of. */
export interface GraphConfig {
  sources: Readonly<Record<string, { readonly type: string }>>;
  transforms: Readonly<Record<string, TransformShape>>;
  outputs: Readonly<Record<string, { readonly type: string; readonly inputs: readonly string[] }>>;
}

interface TransformShape {
  readonly type: string;
  readonly inputs: readonly string[];
  readonly routes?: Readonly<Record<string, unknown>>;
  readonly drop_after?: boolean;
}

export const UNMATCHED = '_unmatched';

export interface GraphProblem {
  path: (string | number)[];
  message: string;
}

/** Read-only picture of the graph: what the status page and `top` draw. */
export interface PipelineGraph {
  components: { name: string; kind: 'source' | 'transform' | 'output'; type: string }[];
  /** `from` is a port: a source, a transform, or `<route transform>.<route>`; `to` a transform or output. */
  edges: { from: string; to: string }[];
}

/** The ports a transform offers to readers. */
export function portsOf(name: string, t: TransformShape): string[] {
  if (t.type !== 'route') return [name];
  return [...Object.keys(t.routes ?? {}).map((r) => `${name}.${r}`), `${name}.${UNMATCHED}`];
}

/** The component a port belongs to (`tenants.payments` -> `tenants`). */
export function componentOf(port: string): string {
  const dot = port.indexOf('.');
  return dot < 0 ? port : port.slice(0, dot);
}

/** Every reader (transform or output name) of every port, in config order. */
export function readersByPort(cfg: GraphConfig): Map<string, string[]> {
  const readers = new Map<string, string[]>();
  const add = (port: string, reader: string) => readers.set(port, [...(readers.get(port) ?? []), reader]);
  for (const [name, t] of Object.entries(cfg.transforms)) for (const i of new Set(t.inputs)) add(i, name);
  for (const [name, o] of Object.entries(cfg.outputs)) for (const i of new Set(o.inputs)) add(i, name);
  return readers;
}

export function describeGraph(cfg: GraphConfig): PipelineGraph {
  const components: PipelineGraph['components'] = [
    ...Object.entries(cfg.sources).map(([name, s]) => ({ name, kind: 'source' as const, type: s.type })),
    ...Object.entries(cfg.transforms).map(([name, t]) => ({ name, kind: 'transform' as const, type: t.type })),
    ...Object.entries(cfg.outputs).map(([name, o]) => ({ name, kind: 'output' as const, type: o.type })),
  ];
  const edges: PipelineGraph['edges'] = [];
  for (const [port, readers] of readersByPort(cfg)) for (const to of readers) edges.push({ from: port, to });
  return { components, edges };
}

/** Transforms in an order where each comes after every transform it reads from (the config is acyclic). */
export function topologicalOrder(cfg: GraphConfig): string[] {
  const order: string[] = [];
  const seen = new Set<string>();
  const visit = (name: string) => {
    if (seen.has(name)) return;
    seen.add(name);
    for (const input of cfg.transforms[name]?.inputs ?? []) {
      const from = componentOf(input);
      if (cfg.transforms[from]) visit(from);
    }
    order.push(name);
  };
  for (const name of Object.keys(cfg.transforms)) visit(name);
  return order;
}

/** The outputs a source's records can reach, through any transforms. */
export function outputsFedBy(cfg: GraphConfig, source: string): string[] {
  const readers = readersByPort(cfg);
  const outputs = new Set<string>();
  const seen = new Set<string>();
  const walk = (port: string) => {
    if (seen.has(port)) return;
    seen.add(port);
    for (const r of readers.get(port) ?? []) {
      const t = cfg.transforms[r];
      if (t) for (const p of portsOf(r, t)) walk(p);
      else outputs.add(r);
    }
  };
  walk(source);
  return [...outputs];
}

/** What `validate` says about the graph: unknown inputs, cycles, transforms and routes nobody reads. */
export function checkGraph(cfg: GraphConfig): GraphProblem[] {
  const problems: GraphProblem[] = [];
  const ports = new Set(Object.keys(cfg.sources));
  for (const [name, t] of Object.entries(cfg.transforms)) {
    if (cfg.sources[name]) problems.push({ path: ['transforms', name], message: `the name ${name} is taken by a source: inputs could not tell them apart` });
    for (const p of portsOf(name, t)) ports.add(p);
  }
  const known = [...ports].join(', ') || 'none';
  const checkInputs = (kind: 'transforms' | 'outputs', name: string, inputs: readonly string[]) => {
    inputs.forEach((input, i) => {
      if (ports.has(input)) return;
      const t = cfg.transforms[input];
      const message =
        t?.type === 'route'
          ? `${input} is a route transform: read one of its routes (${portsOf(input, t).join(', ')})`
          : Object.keys(cfg.transforms).length === 0
            ? `unknown source ${JSON.stringify(input)} (sources: ${known})`
            : `unknown input ${JSON.stringify(input)} (sources, transforms and routes: ${known})`;
      problems.push({ path: [kind, name, 'inputs', i], message });
    });
  };
  for (const [name, t] of Object.entries(cfg.transforms)) checkInputs('transforms', name, t.inputs);
  for (const [name, o] of Object.entries(cfg.outputs)) checkInputs('outputs', name, o.inputs);

  const cycle = findCycle(cfg);
  if (cycle) {
    const i = cfg.transforms[cycle[0]!]!.inputs.findIndex((input) => componentOf(input) === cycle[cycle.length - 2]);
    problems.push({ path: ['transforms', cycle[0]!, 'inputs', Math.max(0, i)], message: `cycle: ${cycle.join(' -> ')}` });
  }

  const readers = readersByPort(cfg);
  for (const [name, t] of Object.entries(cfg.transforms)) {
    if (t.type === 'route') {
      for (const route of Object.keys(t.routes ?? {})) {
        if (!readers.has(`${name}.${route}`)) {
          problems.push({ path: ['transforms', name, 'routes', route], message: `nothing reads ${name}.${route}: add it to the inputs of an output or transform` });
        }
      }
    } else if (!readers.has(name) && !(t.type === 'log_to_metric' && t.drop_after)) {
      const hint = t.type === 'log_to_metric' ? ' (or set drop_after: true to keep only the metrics)' : '';
      problems.push({ path: ['transforms', name], message: `nothing reads this transform: add it to the inputs of an output or transform${hint}` });
    }
  }
  return problems;
}

/** A cycle among transforms as `a -> b -> a`, or undefined. */
function findCycle(cfg: GraphConfig): string[] | undefined {
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (name: string): string[] | undefined => {
    const s = state.get(name);
    if (s === 'done') return undefined;
    if (s === 'open') return [...stack.slice(stack.indexOf(name)), name];
    state.set(name, 'open');
    stack.push(name);
    for (const input of cfg.transforms[name]!.inputs) {
      const from = componentOf(input);
      if (!cfg.transforms[from]) continue;
      const found = visit(from);
      if (found) return found;
    }
    stack.pop();
    state.set(name, 'done');
    return undefined;
  };
  for (const name of Object.keys(cfg.transforms)) {
    const found = visit(name);
    // Walked against the data flow (from reader to input): reverse to read as records flow.
    if (found) return found.reverse();
  }
  return undefined;
}
