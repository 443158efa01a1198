/**
 * SIGTERM, SIGINT and SIGHUP, handled from the first line of main. Node's default for each is to
 * die at once (exit 143, 130, 129); loading the agent's modules and building it takes about half a
 * second, and a pod deleted during that time must still stop cleanly (exit 0), so these handlers
 * are installed before anything else is imported (agent/cli.ts) and remember what arrived until
 * the agent is there to act on it. This module imports nothing, so installing it costs nothing.
 */
export type StopSignal = 'SIGTERM' | 'SIGINT';

export class ProcessSignals {
  /** The first SIGTERM/SIGINT, once one arrived. */
  stopRequested: StopSignal | undefined;
  private stops = 0;
  private onStopHandler: ((signal: StopSignal) => void) | undefined;
  private onForceHandler: ((signal: StopSignal) => void) | undefined;
  private onHupHandler: (() => void) | undefined;
  private readonly listeners: [NodeJS.Signals, () => void][];

  constructor() {
    this.listeners = [
      ['SIGTERM', () => this.stop('SIGTERM')],
      ['SIGINT', () => this.stop('SIGINT')],
      ['SIGHUP', () => this.onHupHandler?.()],
    ];
    for (const [signal, listener] of this.listeners) process.on(signal, listener);
  }

  /**
   * `handler` runs on the first stop signal, at once when it already arrived; `force` on a second
   * one (the operator no longer wants to wait for outputs). Without a handler, a second signal
   * exits 0: nothing has started that could lose anything.
   */
  onStop(handler: (signal: StopSignal) => void, force: (signal: StopSignal) => void): void {
    this.onStopHandler = handler;
    this.onForceHandler = force;
    if (this.stopRequested) handler(this.stopRequested);
  }

  /** SIGHUP before a handler is set is ignored: the config file is read at start anyway. */
  onHup(handler: (() => void) | undefined): void {
    this.onHupHandler = handler;
  }

  /** Removes the process listeners (tests that install their own instance). */
  dispose(): void {
    for (const [signal, listener] of this.listeners) process.off(signal, listener);
  }

  private stop(signal: StopSignal): void {
    this.stops++;
    if (this.stops === 1) {
      this.stopRequested = signal;
      this.onStopHandler?.(signal);
      return;
    }
    if (this.onForceHandler) this.onForceHandler(signal);
    else process.exit(0);
  }
}

let shared: ProcessSignals | undefined;

/** The process's one instance; the first call installs the handlers. */
export function processSignals(): ProcessSignals {
  shared ??= new ProcessSignals();
  return shared;
}
