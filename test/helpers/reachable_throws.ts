import { relative } from 'node:path';
import ts from 'typescript';

/**
 * Every `throw` statement the TypeScript checker can reach from some functions, over the project's
 * own files (node_modules and Node are not walked). Reached means: the roots' bodies, then every
 * function, method, constructor (with its class's field initializers), accessor or variable
 * initializer that a reached body calls, instantiates or merely names. Naming counts because code
 * passes functions around (a registry's `create: createLokiOutput`), so this over-approximates:
 * a callback set up by a constructor and run much later is reached too, which is the safe side.
 */
export interface ThrowSite {
  /** Path from the repository root. */
  file: string;
  line: number;
  /** The enclosing function, method or class member, for people. */
  where: string;
  /** The thrown expression, whitespace collapsed. */
  text: string;
}

export function reachableThrows(repoRoot: string, roots: { file: string; name: string }[]): ThrowSite[] {
  const config = ts.readConfigFile(`${repoRoot}/tsconfig.json`, ts.sys.readFile);
  const parsed = ts.parseJsonConfigFileContent(config.config, ts.sys, repoRoot);
  const program = ts.createProgram({ rootNames: parsed.fileNames, options: { ...parsed.options, noEmit: true } });
  const checker = program.getTypeChecker();
  const own = (sf: ts.SourceFile) => !sf.isDeclarationFile && !sf.fileName.includes('/node_modules/') && sf.fileName.startsWith(repoRoot);

  const seen = new Set<ts.Node>();
  const queue: ts.Node[] = [];
  const enqueue = (n: ts.Node | undefined) => {
    if (!n || seen.has(n) || !own(n.getSourceFile())) return;
    seen.add(n);
    queue.push(n);
  };

  for (const root of roots) {
    const sf = program.getSourceFile(`${repoRoot}/${root.file}`);
    if (!sf) throw new Error(`root file ${root.file} not in the program`);
    let found = false;
    const [owner, member] = root.name.split('.') as [string, string | undefined];
    ts.forEachChild(sf, function visit(n) {
      if (member === undefined && (ts.isFunctionDeclaration(n) || ts.isClassDeclaration(n)) && n.name?.text === owner) {
        enqueueDeclaration(n);
        found = true;
      } else if (member !== undefined && ts.isClassDeclaration(n) && n.name?.text === owner) {
        for (const m of n.members) {
          if ((ts.isMethodDeclaration(m) || ts.isGetAccessorDeclaration(m)) && m.name.getText() === member) {
            enqueue(m);
            found = true;
          }
        }
      }
      ts.forEachChild(n, visit);
    });
    if (!found) throw new Error(`root ${root.file} ${root.name} not found`);
  }

  const declared = new Set<ts.Node>();
  /** A class: its constructor and field initializers (they run on `new`); anything else: itself. */
  function enqueueDeclaration(decl: ts.Node): void {
    if (declared.has(decl)) return;
    declared.add(decl);
    if (ts.isClassDeclaration(decl) || ts.isClassExpression(decl)) {
      for (const m of decl.members) {
        if (ts.isConstructorDeclaration(m)) enqueue(m);
        else if (ts.isPropertyDeclaration(m) && m.initializer && !m.modifiers?.some((x) => x.kind === ts.SyntaxKind.StaticKeyword)) enqueue(m.initializer);
      }
      // A subclass's construction runs its base's.
      const base = decl.heritageClauses?.find((h) => h.token === ts.SyntaxKind.ExtendsKeyword)?.types[0];
      if (base) follow(base.expression);
      return;
    }
    if (ts.isVariableDeclaration(decl)) {
      enqueue(decl.initializer);
      return;
    }
    if (ts.isPropertyAssignment(decl)) {
      enqueue(decl.initializer);
      return;
    }
    if (ts.isShorthandPropertyAssignment(decl)) {
      const value = checker.getShorthandAssignmentValueSymbol(decl);
      for (const d of value?.declarations ?? []) if (!ts.isParameter(d)) enqueueDeclaration(d);
      return;
    }
    if (ts.isFunctionLike(decl) || ts.isPropertyDeclaration(decl)) enqueue(decl);
  }

  /** What an expression names, resolved through imports and aliases. */
  function follow(expr: ts.Node): void {
    let symbol = checker.getSymbolAtLocation(expr);
    if (!symbol) return;
    if (symbol.flags & ts.SymbolFlags.Alias) symbol = checker.getAliasedSymbol(symbol);
    for (const d of symbol.declarations ?? []) {
      if (ts.isParameter(d) || ts.isImportSpecifier(d) || ts.isImportClause(d)) continue;
      enqueueDeclaration(d);
    }
  }

  const sites: ThrowSite[] = [];
  while (queue.length > 0) {
    const node = queue.shift()!;
    const visit = (n: ts.Node): void => {
      if (ts.isThrowStatement(n)) {
        const sf = n.getSourceFile();
        sites.push({
          file: relative(repoRoot, sf.fileName),
          line: sf.getLineAndCharacterOfPosition(n.getStart()).line + 1,
          where: enclosing(n),
          text: n.expression.getText().replace(/\s+/g, ' '),
        });
      }
      if (ts.isNewExpression(n) || ts.isCallExpression(n)) {
        const sig = checker.getResolvedSignature(n);
        const decl = sig?.getDeclaration();
        if (decl) {
          if (ts.isConstructorDeclaration(decl)) enqueueDeclaration(decl.parent);
          else enqueueDeclaration(decl);
        }
        if (ts.isNewExpression(n)) follow(n.expression);
      }
      if (ts.isIdentifier(n) || ts.isPropertyAccessExpression(n)) {
        const target = ts.isPropertyAccessExpression(n) ? n.name : n;
        // Names in declarations and in types are not uses.
        if (!isDeclarationName(target) && !isInType(target)) follow(target);
      }
      ts.forEachChild(n, visit);
    };
    if (ts.isClassDeclaration(node)) enqueueDeclaration(node);
    else visit(node);
  }
  const unique = new Map(sites.map((s) => [`${s.file}:${s.line}`, s]));
  return [...unique.values()].sort((a, b) => (a.file === b.file ? a.line - b.line : a.file < b.file ? -1 : 1));
}

function isDeclarationName(n: ts.Node): boolean {
  const p = n.parent;
  return p !== undefined && 'name' in p && (p as { name?: ts.Node }).name === n && !ts.isPropertyAccessExpression(p);
}

function isInType(n: ts.Node): boolean {
  for (let p: ts.Node | undefined = n.parent; p; p = p.parent) {
    if (ts.isTypeNode(p) || ts.isInterfaceDeclaration(p) || ts.isTypeAliasDeclaration(p)) return true;
    if (ts.isBlock(p) || ts.isSourceFile(p)) return false;
  }
  return false;
}

function enclosing(n: ts.Node): string {
  const names: string[] = [];
  for (let p: ts.Node | undefined = n.parent; p; p = p.parent) {
    if ((ts.isFunctionDeclaration(p) || ts.isMethodDeclaration(p) || ts.isClassDeclaration(p) || ts.isGetAccessorDeclaration(p)) && p.name) names.unshift(p.name.getText());
    else if (ts.isConstructorDeclaration(p)) names.unshift('constructor');
    else if (ts.isVariableDeclaration(p) && ts.isIdentifier(p.name) && (ts.isArrowFunction(p.initializer!) || ts.isFunctionExpression(p.initializer!))) names.unshift(p.name.text);
  }
  return names.join('.') || '(module)';
}
