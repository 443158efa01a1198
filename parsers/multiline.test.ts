import { readFileSync } from 'node:fs';
import { describe, it, expect } from 'vitest';
import { isParseFailure } from './container_line.ts';
import { parseCriLine } from './cri.ts';
import { MultilineGrouper } from './multiline.ts';
import type { MultilineLine, MultilineOptions, MultilineRecord } from './multiline.ts';
import { PartialMerger } from './partial_merger.ts';

type Stream = 'stdout' | 'stderr';

function fixture(name: string): string {
  // The files end with a newline; the record does not.
  return readFileSync(new URL(`./fixtures/${name}`, import.meta.url), 'utf8').replace(/\n$/, '');
}

const T0 = Date.UTC(2026, 10, 21, 10, 0, 0);

/** Line i's time: one millisecond apart, normalised like the CRI parser's output. */
function timeOf(i: number): string {
  return new Date(T0 + i).toISOString().slice(0, 23) + '000000Z';
}

/**
 * Feeds lines the way the container decoder would: consecutive offsets as if each line had a CRI
 * prefix of 40 bytes, times 1 ms apart, `now` = the line's time unless given.
 */
class Feed {
  readonly grouper: MultilineGrouper;
  readonly out: MultilineRecord[] = [];
  readonly lines: MultilineLine[] = [];
  private offset = 0;

  constructor(options: MultilineOptions = { mode: 'auto' }) {
    this.grouper = new MultilineGrouper(options);
  }

  /** Pushes one line; returns what came out for it. */
  push(stream: Stream, content: string, now?: number): MultilineRecord[] {
    const i = this.lines.length;
    const line: MultilineLine = { stream, time: timeOf(i), content, offset: this.offset };
    this.lines.push(line);
    this.offset += 40 + Buffer.byteLength(content) + 1;
    const before = this.out.length;
    this.grouper.push(line, this.out, now ?? T0 + i);
    return this.out.slice(before);
  }

  pushAll(stream: Stream, text: string | string[]): void {
    for (const l of typeof text === 'string' ? text.split('\n') : text) this.push(stream, l);
  }

  /** The record a single line becomes, by its index in the feed. */
  single(i: number): MultilineRecord {
    const l = this.lines[i]!;
    return { stream: l.stream, time: l.time, content: l.content, lines: 1, truncated: false };
  }

  /** The record lines first..last (inclusive, same stream) become, by index. */
  group(first: number, last: number, stream: Stream): MultilineRecord {
    const ls = this.lines.slice(first, last + 1).filter((l) => l.stream === stream);
    return { stream, time: this.lines[first]!.time, content: ls.map((l) => l.content).join('\n'), lines: ls.length, truncated: false };
  }
}

function rec(stream: Stream, time: string, content: string, lines: number, truncated = false): MultilineRecord {
  return { stream, time, content, lines, truncated };
}

describe('auto mode on real stack traces, the other stream interleaved', () => {
  it('Java (Spring Boot 3): one record for the trace with Caused by and `... 42 more`', () => {
    const trace = fixture('java_spring_npe.txt').split('\n');
    const f = new Feed();
    f.push('stdout', '2026-11-21T10:00:00.512Z  INFO 1 --- [orders] [           main] c.e.orders.OrdersApplication             : Started OrdersApplication in 4.213 seconds (process running for 4.871)');
    f.push('stdout', '2026-11-21T10:00:01.234Z ERROR 1 --- [orders] [nio-8080-exec-3] c.e.orders.web.OrderController           : Failed to render shipping label for order 4711');
    // Spring Boot's %wEx puts a blank line before and after the trace.
    f.push('stdout', '');
    const traceStart = f.lines.length;
    f.pushAll('stdout', trace.slice(0, 20));
    f.push('stderr', 'OpenJDK 64-Bit Server VM warning: Sharing is only supported for boot loader classes because bootstrap classpath has been appended');
    f.pushAll('stdout', trace.slice(20, 45));
    f.push('stderr', 'WARNING: A terminally deprecated method in java.lang.System has been called');
    f.pushAll('stdout', trace.slice(45));
    const traceEnd = f.lines.length - 1;
    expect(f.grouper.earliestHeldOffset()).toBe(f.lines[traceStart]!.offset);
    f.push('stdout', '');
    expect(f.push('stdout', '2026-11-21T10:00:01.301Z  INFO 1 --- [orders] [nio-8080-exec-4] c.e.orders.web.OrderController           : GET /orders/4712/label 200 18ms')).toHaveLength(3);

    expect(f.out).toEqual([
      f.single(0),
      f.single(1),
      f.single(2),
      f.single(traceStart + 20), // stderr, out at once while the stdout trace is held
      f.single(traceStart + 46),
      rec('stdout', f.lines[traceStart]!.time, trace.join('\n'), 48),
      f.single(traceEnd + 1), // the blank after the trace is not part of it
      f.single(traceEnd + 2),
    ]);
    expect(f.out[5]!.lines).toBe(48);
    expect(f.grouper.earliestHeldOffset()).toBeUndefined();
    expect(f.grouper.flushAll()).toEqual([]);
  });

  it('Python 3.12: chained tracebacks (both separators, ^^^ and ~~~ markers) form one record', () => {
    const trace = fixture('python_chained.txt').split('\n');
    const f = new Feed();
    f.push('stderr', '2026-11-21 10:00:02,101 INFO worker.main: picked job 77');
    // logging.exception() writes its message first: a record of its own.
    f.push('stderr', '2026-11-21 10:00:02,377 ERROR worker.main: job 77 failed');
    const traceStart = f.lines.length;
    f.pushAll('stderr', trace.slice(0, 5)); // up to `KeyError: 'SKU-1042'`
    f.push('stdout', '10.1.4.7 - - [21/Nov/2026:10:00:02 +0000] "GET /healthz HTTP/1.1" 200 2 "-" "kube-probe/1.31"');
    f.pushAll('stderr', trace.slice(5, 17)); // to the second exception line and its blank
    f.push('stdout', '{"level":"info","msg":"heartbeat","error":"KeyError: none"}');
    f.pushAll('stderr', trace.slice(17));
    expect(f.out).toEqual([f.single(0), f.single(1), f.single(traceStart + 5), f.single(traceStart + 18)]);
    // The final exception line ends the frames; the group waits one line for a chained traceback.
    expect(f.grouper.heldStarts()).toEqual({ stderr: f.lines[traceStart]!.offset });
    f.push('stderr', '2026-11-21 10:00:03,002 INFO worker.main: picked job 78');
    expect(f.out.slice(4)).toEqual([
      rec('stderr', f.lines[traceStart]!.time, trace.join('\n'), 28),
      f.single(f.lines.length - 1),
    ]);
    expect(f.grouper.heldCount()).toBe(0);
  });

  it('Go: a panic with several goroutines, flushed by the idle timer after the process died', () => {
    const trace = fixture('go_panic_goroutines.txt').split('\n');
    const f = new Feed();
    f.push('stderr', '2026/11/21 10:00:04 reconciler: starting 3 workers');
    const traceStart = f.lines.length;
    f.pushAll('stderr', trace.slice(0, 12)); // panic, signal, goroutine 42, blank
    f.push('stdout', '{"level":"info","ts":1763719204.5,"caller":"sync/reconciler.go:60","msg":"reconciled","item":"sku-1"}');
    f.push('stdout', 'I1121 10:00:04.512345       1 reconciler.go:61] synced 12 items');
    f.pushAll('stderr', trace.slice(12));
    const last = T0 + f.lines.length - 1;
    expect(f.out).toEqual([f.single(0), f.single(traceStart + 12), f.single(traceStart + 13)]);
    // The timer, not a next line, ends it: nothing more comes from a crashed container.
    expect(f.grouper.flush(1000, last + 999)).toEqual([]);
    expect(f.grouper.flush(1000, last + 1000)).toEqual([rec('stderr', f.lines[traceStart]!.time, trace.join('\n'), 46)]);
    expect(f.grouper.earliestHeldOffset()).toBeUndefined();
  });

  it('Node.js 22: the uncaught-error preamble, frames and `Node.js v22` line form one record, sent at once', () => {
    const trace = fixture('node_uncaught_typeerror.txt').split('\n');
    const f = new Feed();
    f.push('stderr', '(node:1) [DEP0040] DeprecationWarning: The `punycode` module is deprecated. Please use a userland alternative instead.');
    f.push('stderr', '(Use `node --trace-deprecation ...` to show where the warning was created)');
    f.push('stdout', '{"level":30,"time":1763719205123,"pid":1,"hostname":"consumer-7d9f","msg":"message received","queue":"orders"}');
    const traceStart = f.lines.length;
    f.pushAll('stderr', trace.slice(0, 3)); // location, source, caret: tentative
    expect(f.grouper.earliestHeldOffset()).toBe(f.lines[traceStart]!.offset);
    // JSON on the other stream, even quoting a stack, is never grouped and never waits.
    expect(
      f.push('stdout', '{"level":50,"time":1763719205124,"msg":"handler failed","err":{"type":"TypeError","message":"x is not a function","stack":"TypeError: x is not a function\\n    at run (/app/src/a.js:3:9)"}}'),
    ).toEqual([f.single(traceStart + 3)]);
    f.pushAll('stderr', trace.slice(3, 9));
    f.push('stdout', '{"level":30,"time":1763719205125,"pid":1,"hostname":"consumer-7d9f","msg":"message received","queue":"orders"}');
    f.pushAll('stderr', trace.slice(9, -1));
    expect(f.grouper.heldCount()).toBe(1);
    // Node's last line ends the trace: no timer needed.
    expect(f.push('stderr', trace.at(-1)!)).toEqual([rec('stderr', f.lines[traceStart]!.time, trace.join('\n'), 17)]);
    expect(f.out).toEqual([
      f.single(0),
      f.single(1),
      f.single(2),
      f.single(traceStart + 3),
      f.single(traceStart + 10),
      rec('stderr', f.lines[traceStart]!.time, trace.join('\n'), 17),
    ]);
    expect(f.grouper.earliestHeldOffset()).toBeUndefined();
  });

  it('all four on one container: each trace whole, in order, ordinary lines never held', () => {
    const java = fixture('java_spring_npe.txt');
    const python = fixture('python_chained.txt');
    const go = fixture('go_panic_goroutines.txt');
    const node = fixture('node_uncaught_typeerror.txt');
    const f = new Feed();
    const ordinary = (i: number) => `2026-11-21T10:00:0${i}.000Z INFO request ${i} done in 12ms`;
    f.push('stdout', ordinary(0));
    f.pushAll('stderr', java);
    f.push('stdout', ordinary(1));
    f.pushAll('stderr', python);
    f.push('stdout', ordinary(2));
    f.pushAll('stderr', go);
    f.push('stdout', ordinary(3));
    f.pushAll('stderr', node);
    f.push('stdout', ordinary(4));
    const stderr = f.out.filter((r) => r.stream === 'stderr').map((r) => r.content);
    expect(stderr).toEqual([java, python, go, node]);
    expect(f.out.filter((r) => r.stream === 'stdout').map((r) => r.content)).toEqual([0, 1, 2, 3, 4].map(ordinary));
    expect(f.grouper.heldCount()).toBe(0);
  });
});

describe('auto mode: Java, C# and Node rules', () => {
  it('takes an exception at the end of the line, `nested exception is:`, Suppressed and `common frames omitted`', () => {
    const f = new Feed();
    const trace = [
      'Exception in thread "main" java.lang.IllegalStateException',
      '\tat com.example.Main.run(Main.java:10)',
      '\tSuppressed: java.io.IOException: close failed',
      '\t\tat com.example.Res.close(Res.java:5)',
      '\t\t... 1 more',
      'Caused by: com.example.ConfigException: bad config',
      '\tat com.example.Config.load(Config.java:33)',
      '\t... 3 common frames omitted',
    ];
    f.pushAll('stdout', trace);
    f.push('stdout', 'next');
    expect(f.out).toEqual([f.group(0, 7, 'stdout'), f.single(8)]);

    const g = new Feed();
    g.pushAll('stdout', ['javax.xml.ws.WebServiceException: boom', 'nested exception is:', 'java.net.ConnectException: Connection refused', '\tat java.net.Socket.connect(Socket.java:1)']);
    expect(g.grouper.flushAll()).toEqual([g.group(0, 3, 'stdout')]);
  });

  it('groups a .NET trace with inner exceptions and async boundaries', () => {
    const f = new Feed();
    f.pushAll('stdout', [
      'Unhandled exception. System.InvalidOperationException: Order 17 has no lines',
      ' ---> System.ArgumentNullException: Value cannot be null. (Parameter \'source\')',
      '   at System.Linq.ThrowHelper.ThrowArgumentNullException(ExceptionArgument argument)',
      '   at Orders.Pricing.Total(Order order) in /src/Orders/Pricing.cs:line 22',
      '   --- End of inner exception stack trace ---',
      '   at Orders.Pricing.Total(Order order) in /src/Orders/Pricing.cs:line 27',
      '--- End of stack trace from previous location ---',
      '   at Orders.Program.Main(String[] args) in /src/Orders/Program.cs:line 14',
    ]);
    f.push('stdout', 'info: Microsoft.Hosting.Lifetime[0]');
    expect(f.out).toEqual([f.group(0, 7, 'stdout'), f.single(8)]);
  });

  it('holds an error line alone until the next line shows it is not a trace', () => {
    const f = new Feed();
    expect(f.push('stdout', 'ERROR [main] c.e.Db: Connection Error: timeout after 30s')).toEqual([]);
    expect(f.grouper.earliestHeldOffset()).toBe(0);
    expect(f.push('stdout', 'INFO [main] c.e.Db: retrying')).toEqual([f.single(0), f.single(1)]);
  });

  it('does not let a trace swallow the blank line and line after it', () => {
    const f = new Feed();
    f.pushAll('stdout', ['java.lang.RuntimeException: x', '\tat a.B.c(B.java:1)', '', '', 'after']);
    expect(f.out).toEqual([f.group(0, 1, 'stdout'), f.single(2), f.single(3), f.single(4)]);
    // A blank line right after the exception line belongs to the trace once a frame follows.
    const g = new Feed();
    g.pushAll('stdout', ['java.lang.RuntimeException: x', '', '\tat a.B.c(B.java:1)', 'after']);
    expect(g.out).toEqual([g.group(0, 2, 'stdout'), g.single(3)]);
  });

  it('starts a new group on a second exception right after a trace', () => {
    const f = new Feed();
    f.pushAll('stdout', ['java.lang.RuntimeException: a', '\tat a.B.c(B.java:1)', 'java.lang.RuntimeException: b', '\tat a.B.d(B.java:2)']);
    expect(f.grouper.flushAll()).toEqual([f.group(2, 3, 'stdout')]);
    expect(f.out).toEqual([f.group(0, 1, 'stdout')]);
  });

  it('groups a caught Node error printed with its properties and cause', () => {
    const f = new Feed();
    f.pushAll('stderr', [
      'Error: request to https://payments.internal/charge failed',
      '    at ClientRequest.<anonymous> (/app/node_modules/node-fetch/lib/index.js:1501:11)',
      '    at ClientRequest.emit (node:events:518:28)',
      '    at TLSSocket.socketErrorListener (node:_http_client:500:9) {',
      "  type: 'system',",
      "  errno: 'ECONNREFUSED',",
      "  code: 'ECONNREFUSED',",
      '  [cause]: Error: connect ECONNREFUSED 10.0.3.12:443',
      '      at TCPConnectWrap.afterConnect [as oncomplete] (node:net:1607:16)',
      '}',
      '2026-11-21T10:00:06.001Z retrying in 500ms',
    ]);
    expect(f.out).toEqual([f.group(0, 9, 'stderr'), f.single(10)]);
  });

  it('groups an unhandled rejection whose thrown value is not an Error', () => {
    const f = new Feed();
    const lines = [
      'node:internal/process/promises:394',
      '    triggerUncaughtException(err, true /* fromPromise */);',
      '    ^',
      '',
      '[UnhandledPromiseRejection: This error originated either by throwing inside of an async function without a catch block, or by rejecting a promise which was not handled with .catch(). The promise rejected with the reason "quota exceeded".] {',
      "  code: 'ERR_UNHANDLED_REJECTION'",
      '}',
      '',
      'Node.js v22.11.0',
    ];
    f.pushAll('stderr', lines);
    expect(f.out).toEqual([f.group(0, 8, 'stderr')]);
  });

  it('lets ordinary lines that look like a Node preamble through one by one, in order', () => {
    const f = new Feed();
    f.pushAll('stdout', ['/etc/app/config.js:12', 'loaded 3 plugins', 'listening on :8080', 'ready']);
    expect(f.out).toEqual([f.single(0), f.single(1), f.single(2), f.single(3)]);
    const g = new Feed();
    // Location, source and caret, then no error line: replayed, `TypeError: x` opens a group that
    // the caret line then closes.
    g.pushAll('stdout', ['/app/x.js:3', 'TypeError: x', '  ^', 'plain']);
    expect(g.out).toEqual([g.single(0), g.single(1), g.single(2), g.single(3)]);
    expect(g.grouper.heldCount()).toBe(0);
  });
});

describe('auto mode: Python and Go rules', () => {
  it('ends a traceback at a bare exception name and keeps two tracebacks apart', () => {
    const f = new Feed();
    f.pushAll('stderr', [
      'Traceback (most recent call last):',
      '  File "/app/t.py", line 3, in <module>',
      '    assert total > 0',
      'AssertionError',
      'Traceback (most recent call last):',
      '  File "<frozen runpy>", line 198, in _run_module_as_main',
      '  File "/app/m.py", line 9, in <module>',
      '    main()',
      'KeyboardInterrupt',
      '',
      'done',
    ]);
    expect(f.out).toEqual([f.group(0, 3, 'stderr'), f.group(4, 8, 'stderr'), f.single(9), f.single(10)]);
  });

  it('ends a traceback whose frames are followed by an unrelated log line', () => {
    const f = new Feed();
    f.pushAll('stderr', ['Traceback (most recent call last):', '  File "/app/t.py", line 3, in <module>', '2026-11-21 10:00:00,000 INFO other thread']);
    expect(f.out).toEqual([f.group(0, 1, 'stderr'), f.single(2)]);
  });

  it('groups a recovered handler panic from net/http and what follows it apart', () => {
    const f = new Feed();
    f.pushAll('stderr', [
      '2026/11/21 10:00:07 http: panic serving 10.1.4.7:51234: runtime error: index out of range [3] with length 3',
      'goroutine 34 [running]:',
      'net/http.(*conn).serve.func1()',
      '\t/usr/local/go/src/net/http/server.go:1947 +0xbe',
      'panic({0x6c2f40?, 0xc0000a2018?})',
      '\t/usr/local/go/src/runtime/panic.go:785 +0x132',
      'main.listItems({0x8a3f40, 0xc0002ae0e0}, 0xc0002b2000)',
      '\t/src/main.go:41 +0x1d5',
      'created by net/http.(*Server).Serve in goroutine 1',
      '\t/usr/local/go/src/net/http/server.go:3360 +0x485',
      '2026/11/21 10:00:07 GET /items 200',
    ]);
    expect(f.out).toEqual([f.group(0, 9, 'stderr'), f.single(10)]);
  });

  it('groups `fatal error:` with the runtime stack, Go 1.23 headers and re-panics', () => {
    const f = new Feed();
    f.pushAll('stderr', [
      'fatal error: concurrent map writes',
      '',
      'goroutine 21 gp=0xc000102a80 m=4 mp=0xc000080008 [running]:',
      'runtime.fatal({0x4b1f2d?, 0x0?})',
      '\t/usr/local/go/src/runtime/panic.go:1088 +0x4a fp=0xc00006e738 sp=0xc00006e708 pc=0x46b2aa',
      '...additional frames elided...',
      '',
      'goroutine 1 gp=0xc0000061c0 m=nil [chan receive]:',
      'main.main()',
      '\t/src/main.go:20 +0x85',
    ]);
    f.pushAll('stderr', ['panic: first [recovered]', '\tpanic: second', '', 'goroutine 1 [running]:', 'main.main()', '\t/src/main.go:9 +0x1d', 'exit status 2']);
    expect(f.out).toEqual([f.group(0, 9, 'stderr'), f.group(10, 15, 'stderr'), f.single(16)]);
  });

  it('does not take `panic:` inside a word or without its space', () => {
    const f = new Feed();
    f.pushAll('stdout', ['nopanic: fine', 'panic:nospace', 'level=warn msg="recovered from panic: x"']);
    // The last one is a panic line by the upstream rule (`\bpanic: `): held, then closed by flushAll.
    expect(f.out).toEqual([f.single(0), f.single(1)]);
    expect(f.grouper.flushAll()).toEqual([f.single(2)]);
  });
});

describe('streams, JSON and the other modes', () => {
  it('never joins a frame on one stream to a trace on the other', () => {
    const f = new Feed();
    f.push('stderr', 'java.lang.IllegalStateException: boom');
    f.push('stdout', '\tat com.example.Main.run(Main.java:10)');
    f.push('stderr', '\tat com.example.Main.main(Main.java:3)');
    expect(f.out).toEqual([f.single(1)]);
    expect(f.grouper.flushAll()).toEqual([f.group(0, 2, 'stderr')]);
  });

  it('never groups JSON lines, and a JSON line closes an open group', () => {
    for (const options of [{ mode: 'auto' }, { mode: 'indented' }, { mode: 'start_pattern', startPattern: /^\S/ }] as const) {
      const f = new Feed(options);
      f.push('stdout', '{"level":"error","msg":"java.lang.IllegalStateException: boom"}');
      f.push('stdout', '{"level":"error","msg":"trace"}');
      f.push('stdout', 'java.lang.IllegalStateException: boom');
      f.push('stdout', '\tat com.example.Main.run(Main.java:10)');
      f.push('stdout', '{"level":"info","msg":"next"}');
      expect(f.out, options.mode).toEqual([f.single(0), f.single(1), f.group(2, 3, 'stdout'), f.single(4)]);
    }
  });

  it('start_pattern: a Spring Boot log line, its blank lines and trace become one record', () => {
    const trace = fixture('java_spring_npe.txt');
    const f = new Feed({ mode: 'start_pattern', startPattern: /^\d{4}-\d{2}-\d{2}T/ });
    f.push('stdout', 'Picked up JAVA_TOOL_OPTIONS: -XX:MaxRAMPercentage=75'); // before any start: out at once
    f.push('stdout', '2026-11-21T10:00:01.234Z ERROR 1 --- [orders] [nio-8080-exec-3] c.e.orders.web.OrderController           : Failed');
    f.push('stdout', '');
    f.pushAll('stdout', trace);
    f.push('stdout', '');
    f.push('stdout', '2026-11-21T10:00:01.301Z  INFO 1 --- [orders] [nio-8080-exec-4] c.e.orders.web.OrderController           : GET 200');
    expect(f.out).toEqual([f.single(0), f.group(1, 51, 'stdout')]);
    expect(f.out[1]!.lines).toBe(51);
    expect(f.grouper.earliestHeldOffset()).toBe(f.lines[52]!.offset);
    expect(f.grouper.flushAll()).toEqual([f.single(52)]);
  });

  it('start_pattern: a global regex is used without lastIndex state', () => {
    const f = new Feed({ mode: 'start_pattern', startPattern: /^\[/g });
    f.pushAll('stdout', ['[1] a', ' b', '[2] c', '[3] d', 'e']);
    expect(f.out).toEqual([f.group(0, 1, 'stdout'), f.single(2)]);
    expect(f.grouper.flushAll()).toEqual([f.group(3, 4, 'stdout')]);
  });

  it('indented: indented lines, `Caused by:` and `... N more` continue; trailing blanks do not', () => {
    const f = new Feed({ mode: 'indented' });
    f.pushAll('stdout', ['  stray indented', 'config:', '  port: 8080', '', '  host: a', 'Caused by: x', '... 2 more', '', 'next']);
    expect(f.out).toEqual([f.single(0), f.group(1, 6, 'stdout'), f.single(7)]);
    expect(f.grouper.flushAll()).toEqual([f.single(8)]);
  });

  it('rejects bad options', () => {
    expect(() => new MultilineGrouper({ mode: 'start_pattern' })).toThrow(/startPattern/);
    expect(() => new MultilineGrouper({ mode: 'auto', maxLines: 0 })).toThrow(RangeError);
    expect(() => new MultilineGrouper({ mode: 'auto', maxBytes: 0 })).toThrow(RangeError);
    expect(() => new MultilineGrouper({ mode: 'java' as 'auto' })).toThrow(/unknown multiline mode/);
  });
});

describe('limits, timers and checkpoints', () => {
  it('bounds a group that never ends by lines: whole-line records, nothing lost', () => {
    const f = new Feed({ mode: 'auto', maxLines: 100 });
    f.push('stderr', 'java.lang.StackOverflowError');
    for (let i = 0; i < 249; i++) f.push('stderr', `\tat com.example.Recursive.call(Recursive.java:${i})`);
    expect(f.out.map((r) => r.lines)).toEqual([100, 100]);
    expect(f.out).toEqual([f.group(0, 99, 'stderr'), f.group(100, 199, 'stderr')]);
    // The rest of the trace is held and goes on: the state survived the cut.
    expect(f.grouper.earliestHeldOffset()).toBe(f.lines[200]!.offset);
    expect(f.grouper.flushAll()).toEqual([f.group(200, 249, 'stderr')]);
    expect(f.out.every((r) => !r.truncated)).toBe(true);
  });

  it('bounds a group that never ends by bytes, and cuts only a line that alone is too long', () => {
    const f = new Feed({ mode: 'auto', maxBytes: 1000 });
    f.push('stderr', 'java.lang.StackOverflowError');
    for (let i = 0; i < 200; i++) f.push('stderr', `\tat com.example.Recursive.call(Recursive.java:${1000 + i})`);
    const all = [...f.out, ...f.grouper.flushAll()];
    expect(all.length).toBeGreaterThan(5);
    for (const r of all) {
      expect(r.content.length).toBeLessThanOrEqual(1000);
      expect(r.truncated).toBe(false);
    }
    expect(all.map((r) => r.content).join('\n')).toBe(f.lines.map((l) => l.content).join('\n'));
    expect(all.reduce((n, r) => n + r.lines, 0)).toBe(201);

    const g = new Feed({ mode: 'auto', maxBytes: 50 });
    g.push('stdout', 'java.lang.IllegalStateException: ' + 'x'.repeat(100));
    expect(g.out).toEqual([rec('stdout', g.lines[0]!.time, ('java.lang.IllegalStateException: ' + 'x'.repeat(100)).slice(0, 50), 1, true)]);
    g.push('stdout', '\tat a.B.c(B.java:1)');
    g.push('stdout', 'next');
    expect(g.out.slice(1)).toEqual([g.group(1, 1, 'stdout'), g.single(2)]);
  });

  it('marks the record of a group holding a line the P/F merger had cut', () => {
    const g = new MultilineGrouper({ mode: 'auto' });
    const out: MultilineRecord[] = [];
    const line = (content: string, offset: number, truncated = false): MultilineLine => ({ stream: 'stdout', time: timeOf(offset), content, offset, truncated });
    g.push(line('java.lang.RuntimeException: ' + 'x'.repeat(20), 0, true), out, 0);
    g.push(line('\tat a.B.c(B.java:1)', 100), out, 0);
    g.push(line('next', 200), out, 0);
    g.push(line('cut ordinary line', 300, true), out, 0);
    expect(out.map((r) => [r.lines, r.truncated])).toEqual([
      [2, true],
      [1, false],
      [1, true],
    ]);
  });

  it('bounds blank lines after an exception line by the line cap', () => {
    const f = new Feed({ mode: 'auto', maxLines: 10 });
    f.push('stdout', 'java.lang.RuntimeException: x');
    for (let i = 0; i < 25; i++) f.push('stdout', '');
    expect(f.out.map((r) => r.lines)).toEqual([10, 10]);
    expect(f.grouper.flushAll().map((r) => r.lines)).toEqual([1, 1, 1, 1, 1, 1]);
  });

  it('flushes idle groups per stream, driven by the caller`s clock', () => {
    const f = new Feed();
    f.push('stdout', 'java.lang.RuntimeException: out', 1000);
    f.push('stderr', 'Traceback (most recent call last):', 1500);
    f.push('stderr', '  File "/app/t.py", line 3, in <module>', 3000);
    expect(f.grouper.flush(2000, 2999)).toEqual([]);
    expect(f.grouper.flush(2000, 3000)).toEqual([f.single(0)]);
    expect(f.grouper.earliestHeldOffset()).toBe(f.lines[1]!.offset);
    expect(f.grouper.flush(2000, 4999)).toEqual([]);
    expect(f.grouper.flush(2000, 5000)).toEqual([f.group(1, 2, 'stderr')]);
    expect(f.grouper.heldCount()).toBe(0);
    // After an idle flush the stream starts afresh: a frame alone is an ordinary line.
    expect(f.push('stderr', '  File "/app/t.py", line 4, in <module>')).toEqual([f.single(3)]);
  });

  it('flushes held tentative lines as they are, oldest stream first', () => {
    const f = new Feed();
    f.push('stderr', '/app/src/x.js:3');
    f.push('stdout', 'java.lang.RuntimeException: x');
    f.push('stderr', '  foo();');
    expect(f.grouper.heldStarts()).toEqual({ stdout: f.lines[1]!.offset, stderr: 0 });
    expect(f.grouper.flushAll()).toEqual([f.single(0), f.single(2), f.single(1)]);
  });

  it('reports the earliest held offset while held and none after', () => {
    const f = new Feed();
    expect(f.grouper.earliestHeldOffset()).toBeUndefined();
    f.push('stdout', 'plain');
    expect(f.grouper.earliestHeldOffset()).toBeUndefined();
    f.push('stdout', 'java.lang.RuntimeException: x');
    f.push('stderr', 'panic: boom');
    expect(f.grouper.earliestHeldOffset()).toBe(f.lines[1]!.offset);
    f.push('stdout', '\tat a.B.c(B.java:1)');
    expect(f.grouper.earliestHeldOffset()).toBe(f.lines[1]!.offset);
    f.push('stdout', 'plain again');
    expect(f.grouper.earliestHeldOffset()).toBe(f.lines[2]!.offset);
    f.grouper.flush(0, Number.MAX_SAFE_INTEGER);
    expect(f.grouper.earliestHeldOffset()).toBeUndefined();
  });
});

describe('after P/F joining', () => {
  it('groups logical lines joined from CRI chunks, checkpointing before the held group', () => {
    const raw = [
      '2026-11-21T10:00:00.1Z stdout F started',
      '2026-11-21T10:00:00.2Z stderr F java.lang.IllegalStateException: boom',
      '2026-11-21T10:00:00.3Z stderr P \tat com.example.VeryLong',
      '2026-11-21T10:00:00.4Z stdout F tick',
      '2026-11-21T10:00:00.5Z stderr F Name.run(VeryLongName.java:7)',
      '2026-11-21T10:00:00.6Z stderr F ordinary',
    ];
    const merger = new PartialMerger();
    const grouper = new MultilineGrouper({ mode: 'auto' });
    const out: MultilineRecord[] = [];
    const checkpoints: number[] = [];
    let offset = 0;
    const joinStart: Partial<Record<Stream, number>> = {};
    for (const physical of raw) {
      const parsed = parseCriLine(physical);
      if (isParseFailure(parsed)) throw new Error(parsed.error);
      // A joined line starts where its first chunk did.
      const lineStart = joinStart[parsed.stream] ?? offset;
      if (parsed.partial) joinStart[parsed.stream] = lineStart;
      else delete joinStart[parsed.stream];
      const joined = merger.push(parsed, offset, 0);
      if (joined !== undefined) {
        grouper.push({ stream: joined.stream, time: joined.time, content: joined.content, offset: lineStart }, out, 0);
      }
      offset += physical.length + 1;
      checkpoints.push(Math.min(offset, merger.earliestPendingOffset() ?? offset, grouper.earliestHeldOffset() ?? offset));
    }
    const exceptionAt = raw[0]!.length + 1;
    expect(checkpoints).toEqual([exceptionAt, exceptionAt, exceptionAt, exceptionAt, exceptionAt, offset]);
    expect(out).toEqual([
      rec('stdout', '2026-11-21T10:00:00.100000000Z', 'started', 1),
      rec('stdout', '2026-11-21T10:00:00.400000000Z', 'tick', 1),
      rec('stderr', '2026-11-21T10:00:00.200000000Z', 'java.lang.IllegalStateException: boom\n\tat com.example.VeryLongName.run(VeryLongName.java:7)', 2),
      rec('stderr', '2026-11-21T10:00:00.600000000Z', 'ordinary', 1),
    ]);
  });
});

describe('what closed each group, and lines flushed without their F', () => {
  it('onGroup is told the reason of every group emitted, never of lines passed straight through', () => {
    const reasons: string[] = [];
    const f = new Feed({ mode: 'start_pattern', startPattern: /^BEGIN/, maxLines: 3, maxBytes: 40, onGroup: (reason, lines) => reasons.push(`${reason}:${lines}`) });
    f.pushAll('stdout', ['before', 'BEGIN a', ' 1', 'BEGIN b', ' 1', ' 2', ' 3', 'BEGIN c ' + 'x'.repeat(30), ' a line that no longer fits']);
    f.push('stderr', 'BEGIN quiet', T0 + 10);
    // ' 3' continues b's pattern group after the cut, alone, until `BEGIN c` closes it; c does not
    // fit with the next line in 40 bytes.
    expect(reasons).toEqual(['complete:2', 'max_lines:3', 'complete:1', 'max_bytes:1']);
    expect(f.out.filter((r) => r.lines === 1).map((r) => r.content)).toEqual(['before', ' 3', 'BEGIN c ' + 'x'.repeat(30)]);
    expect(f.grouper.flush(1000, T0 + 500)).toEqual([]);
    expect(f.grouper.flush(1000, T0 + 2000).map((r) => r.content)).toEqual([' a line that no longer fits', 'BEGIN quiet']);
    expect(reasons.slice(4)).toEqual(['timeout:1', 'timeout:1']);
    f.push('stdout', 'BEGIN last');
    f.grouper.flushAll('shutdown');
    f.push('stdout', 'BEGIN file end');
    f.grouper.flushAll();
    expect(reasons.slice(6)).toEqual(['shutdown:1', 'end_of_file:1']);
  });

  it('a group holding a line flushed without its F is marked incomplete; its neighbours are not', () => {
    const g = new MultilineGrouper({ mode: 'start_pattern', startPattern: /^BEGIN/ });
    const out: MultilineRecord[] = [];
    const line = (content: string, offset: number, incomplete = false): MultilineLine => ({ stream: 'stdout', time: timeOf(offset), content, offset, incomplete });
    g.push(line('BEGIN one', 0), out);
    g.push(line(' cut short', 1, true), out);
    g.push(line('BEGIN two', 2), out);
    g.push(line(' whole', 3), out);
    out.push(...g.flushAll());
    expect(out.map((r) => [r.content, r.incomplete])).toEqual([
      ['BEGIN one\n cut short', true],
      ['BEGIN two\n whole', undefined],
    ]);
  });
});
