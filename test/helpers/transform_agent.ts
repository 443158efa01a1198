import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ChildAgent, freePort, waitFor } from './child_agent.ts';
import { NodeTree, readRecords, SOURCE, type OutRecord } from './agent_harness.ts';

/**
 * A real agent process over a temporary node tree with a `transforms:` block and one `file` output
 * per entry of `outputs` (name -> inputs): what the transform end-to-end tests run.
 */
export class TransformAgent {
  readonly tree: NodeTree;
  readonly agent: ChildAgent;
  readonly port: number;
  readonly configPath: string;
  private readonly outputs: Record<string, readonly string[]>;

  private constructor(tree: NodeTree, port: number, outputs: Record<string, readonly string[]>) {
    this.tree = tree;
    this.port = port;
    this.outputs = outputs;
    this.configPath = join(tree.root, 'agent.yaml');
    this.agent = new ChildAgent(this.configPath);
  }

  static async start(opts: {
    transforms: string;
    outputs: Record<string, readonly string[]>;
    /** Extra keys of the container source (YAML lines, 4-space indented). */
    source?: string;
    /** Lays out the log files before the agent starts. */
    before?: (tree: NodeTree) => void;
  }): Promise<TransformAgent> {
    const tree = new NodeTree('kta-transforms-');
    const t = new TransformAgent(tree, await freePort(), opts.outputs);
    t.writeConfig(opts.transforms, opts.source);
    opts.before?.(tree);
    t.agent.start();
    await t.agent.ready(t.port);
    return t;
  }

  writeConfig(transforms: string, source = ''): void {
    const outputs = Object.entries(this.outputs)
      .map(([name, inputs]) => `  ${name}:\n    type: file\n    inputs: ${JSON.stringify(inputs)}\n    path: ${JSON.stringify(this.outputPath(name))}\n`)
      .join('');
    writeFileSync(
      this.configPath,
      `node_name: test-node
data_dir: ${JSON.stringify(this.tree.dataDir)}
shutdown_timeout: 10s
server: { listen: "127.0.0.1:${this.port}" }
kubernetes: { mode: disabled }
sources:
  ${SOURCE}:
    type: container_logs
    include: [${JSON.stringify(join(this.tree.containersDir, '*.log'))}]
    glob_interval: 100ms
    poll_interval: 100ms
    checkpoint_interval: 200ms
${source}transforms:
${transforms}outputs:
${outputs}`,
    );
  }

  outputPath(name: string): string {
    return join(this.tree.root, 'out', `${name}.ndjson`);
  }

  records(output: string): OutRecord[] {
    return readRecords(this.outputPath(output));
  }

  /** Waits until `output` holds at least `n` records; returns them. */
  waitRecords(output: string, n: number, timeoutMs = 20_000): Promise<OutRecord[]> {
    return waitFor(`${n} records in ${output}`, () => {
      const r = this.records(output);
      return r.length >= n ? r : undefined;
    }, timeoutMs);
  }

  async metrics(): Promise<string> {
    return (await fetch(`http://127.0.0.1:${this.port}/metrics`)).text();
  }

  /** The container source's checkpoint: offset per file path. */
  checkpointOffsets(): Map<string, number> {
    const cp = JSON.parse(readFileSync(join(this.tree.dataDir, 'checkpoints', `${SOURCE}.json`), 'utf8')) as { files: { path: string; offset: number }[] };
    return new Map(cp.files.map((f) => [f.path, f.offset]));
  }

  async stop(): Promise<number | string> {
    if (!this.agent.proc || this.agent.proc.exitCode !== null || this.agent.proc.signalCode !== null) return this.agent.exited();
    return this.agent.kill('SIGTERM');
  }

  async remove(): Promise<void> {
    if (this.agent.proc && this.agent.proc.exitCode === null && this.agent.proc.signalCode === null) await this.agent.kill('SIGKILL');
    this.tree.remove();
  }
}
