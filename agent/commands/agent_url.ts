import { loadConfigFile } from '../config/load.ts';

/**
 * Where a day-two command (`tap`, `top`) finds the running agent: `--agent URL`, else the
 * `server.listen` of `--config FILE` (a wildcard address means this host's loopback), else
 * TELEMETRY_AGENT_URL, else the default port on loopback. Inside the agent's pod
 * (`kubectl exec … -- telemetry-agent top`) the default is right.
 */
export function agentUrl(opts: { agent?: string; config?: string }, env: NodeJS.ProcessEnv = process.env): string {
  if (opts.agent) return opts.agent.replace(/\/+$/, '');
  if (opts.config) {
    const listen = loadConfigFile(opts.config, env).server.listen;
    const at = listen.lastIndexOf(':');
    let host = listen.slice(0, at);
    if (host === '0.0.0.0' || host === '') host = '127.0.0.1';
    if (host === '[::]') host = '[::1]';
    return `http://${host}:${listen.slice(at + 1)}`;
  }
  return (env.TELEMETRY_AGENT_URL ?? 'http://127.0.0.1:9464').replace(/\/+$/, '');
}
