/**
 * Multiline grouping: stack traces and other records that span lines, after P/F joining
 * (log-formats.md §5). The `auto` rules are the state machines of Google's
 * fluent-plugin-detect-exceptions (`exception_detector.rb`) and Fluent Bit's ports
 * (`flb_ml_parser_{java,python,go}.c`), with the additions §5.2 asks for and a few documented
 * deviations (see the states below).
 *
 * Runs on every line of every container that enables it, so a line that cannot start a group costs
 * a few charCode checks and one `indexOf(':')` scan, never a regex: the regexes below only run on
 * lines that a cheap check has already singled out, or while a group is open.
 */

/** A logical line: P/F chunks already joined (partial_merger.ts), terminator removed. */
export interface MultilineLine {
  stream: 'stdout' | 'stderr';
  /** Normalised RFC 3339 (timestamp.ts). */
  time: string;
  content: string;
  /** Byte offset in the file where the line starts (its first P chunk, for a joined line). */
  offset: number;
  /**
   * The line was already cut before it got here (PartialMerger's line cap): the record holding it
   * is marked truncated too. A JoinedLine with its offset added fits this interface as it is.
   */
  truncated?: boolean;
  /** Flushed without its F (PartialMerger): the record holding it is marked incomplete too. */
  incomplete?: boolean;
}

export interface MultilineRecord {
  stream: 'stdout' | 'stderr';
  /** The first line's time. */
  time: string;
  /** The group's lines joined with `\n`. */
  content: string;
  lines: number;
  /**
   * A line was cut, here to fit `maxBytes` or before (see MultilineLine.truncated): the record
   * lacks some of the text that was logged.
   */
  truncated: boolean;
  /** A line of it was flushed without its F (see MultilineLine.incomplete); undefined otherwise. */
  incomplete?: true;
}

/**
 * What closed a group: `complete` the next line did not continue it (or the trace's own end, Node's
 * `Node.js vNN`), `max_lines`/`max_bytes` a limit cut it, `timeout` it was idle, `end_of_file` the
 * file was finished (rotated and drained, deleted, truncated), `shutdown` the source stopped.
 */
export type MultilineFlushReason = 'complete' | 'max_lines' | 'max_bytes' | 'timeout' | 'end_of_file' | 'shutdown';

/**
 * - `auto`: the language rules (Java, C#, Node.js, Python, Go). Only lines that look like the start
 *   of a trace open a group; everything else passes straight through.
 * - `start_pattern`: a line matching the pattern starts a record, every other line continues the
 *   open one (a line before any start passes through).
 * - `indented`: the generic fallback of §5.2: a line not beginning with a space or tab starts a
 *   record; indented lines, `Caused by:` and `... N more` continue it. Wrong for apps that indent
 *   ordinary lines, hence opt-in.
 */
export type MultilineMode = 'auto' | 'start_pattern' | 'indented';

export interface MultilineOptions {
  mode: MultilineMode;
  /** Required for `start_pattern` (compile user input with regex_body.ts `compileRegex`). */
  startPattern?: RegExp;
  /** Most lines in one record, default 1000 (what GKE runs detect-exceptions with). */
  maxLines?: number;
  /**
   * Most content in one record, in UTF-16 code units like PartialMerger's cap (equal to bytes for
   * ASCII, which stack traces almost always are), default 1 MiB (§1.3 suggests 1-2 MiB; Fluent Bit
   * caps at 2 MB).
   */
  maxBytes?: number;
  /** Told of every group emitted (not of lines passed straight through), for a metric. */
  onGroup?: (reason: MultilineFlushReason, lines: number) => void;
}

export const MULTILINE_DEFAULT_MAX_LINES = 1000;
export const MULTILINE_DEFAULT_MAX_BYTES = 1024 * 1024;

// States. A number, not a string, so the per-line switch is a jump table.
const REJECT = -1; // the line does not belong to the open group
const START = 0; // nothing open
const DONE = 1; // the line ends the group: emit it at once
// Java, C# and Node.js (detect-exceptions maps js and csharp to the Java rules)
const JAVA_EXC = 2; // after an exception line (java_after_exception)
const JAVA_EXC_BLANK = 3; // blank lines after it, tentative
const JAVA_NESTED = 4; // after `nested exception is:` (java_start_exception)
const JAVA_FRAMES = 5; // in `at` frames (java)
const NODE_PROPS = 6; // Node's `{ code: 'X' }` after the last frame, up to `}`
const NODE_END_BLANK = 7; // tentative: blank after frames, where Node prints `Node.js vNN`
const NODE_FILE = 8; // tentative: `/app/x.js:12`, the preamble of an uncaught error
const NODE_SOURCE = 9; // tentative: the source line
const NODE_CARET = 10; // tentative: the `^` marker line
const NODE_CARET_BLANK = 11; // tentative: the blank before the error line
// Python
const PY_FRAMES = 12; // after `Traceback (most recent call last):`
const PY_EXC = 13; // after the final `XxxError: msg` line
const PY_EXC_BLANK = 14; // tentative: a chain separator may follow
const PY_CHAIN = 15; // after `During handling…` / `The above exception…`
const PY_CHAIN_BLANK = 16; // tentative
// Go
const GO_PANIC = 17; // after `panic: ` / `fatal error: `
const GO_SIGNAL = 18; // after `[signal SIGSEGV…]`
const GO_GOROUTINE = 19; // tentative: a goroutine header must come next
const GO_FUNC = 20; // expects a function line (go_frame_1)
const GO_FILE = 21; // expects the tab-indented file line (go_frame_2)
// generic modes
const INDENTED = 22;
const INDENTED_BLANK = 23; // tentative
const PATTERN = 24;

/**
 * A line that moves the machine into a tentative state is held aside instead of joining the group:
 * a blank line after a trace only belongs to it if the trace goes on after it, and Node's
 * `file.js:12` preamble only if an error line follows. The next accepted line commits the held
 * ones; a rejecting line sends them back through as if they had just arrived, so a trace never
 * swallows a blank line or an ordinary line that happened to look like a preamble.
 */
const TENTATIVE = new Uint8Array(25);
for (const s of [
  JAVA_EXC_BLANK,
  NODE_END_BLANK,
  NODE_FILE,
  NODE_SOURCE,
  NODE_CARET,
  NODE_CARET_BLANK,
  PY_EXC_BLANK,
  PY_CHAIN_BLANK,
  GO_GOROUTINE,
  INDENTED_BLANK,
]) {
  TENTATIVE[s] = 1;
}

const MODE_AUTO = 0;
const MODE_PATTERN = 1;
const MODE_INDENTED = 2;

const TAB = 9;
const SPACE = 32;
const LBRACE = 123; // {
const RBRACE = 125; // }

const TRACEBACK = 'Traceback (most recent call last):';
const PY_DURING = 'During handling of the above exception, another exception occurred:';
const PY_CAUSE = 'The above exception was the direct cause of the following exception:';

/** `java.lang.IllegalStateException:`, `KeyError:`, bare `AssertionError` (upstream needs the colon). */
const PY_EXCEPTION_LINE = /^(?:[^\s.():]+\.)*[^\s.():]+(?::|$)/;
/** `goroutine 1 [running]:`, also Go 1.23's `goroutine 1 gp=0x… m=0 mp=0x… [running]:`. */
const GO_GOROUTINE_HEADER = /^goroutine \d+ (?:[^\s[]+ )*\[[^\]]+\]:$/;
/** `main.(*Server).handle(0x0, …)`, `panic({0x4a7c20?, …})` (go_frame_1). */
const GO_FUNCTION_LINE = /^(?:[^\s.:]+\.)*[^\s.():]+\(/;
/** Only right after an exception line, so one regex run per trace at most. */
const JAVA_NESTED_LINE = /^[\t ]*nested exception is:[\t ]*$/;
/** `... 42 more`, `... 3 common frames omitted`, after optional indentation. */
const JAVA_MORE = /^[\t ]*\.\.\. \d+ (?:more|common frames omitted)/;

function isBlankOrTab(c: number): boolean {
  return c === SPACE || c === TAB;
}

function isWordChar(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95;
}

/** `s` has `word` ending just before index `end`. */
function endsAt(s: string, end: number, word: string): boolean {
  return end >= word.length && s.startsWith(word, end - word.length);
}

/**
 * The start rules that look inside a line, checked at each `:` so the whole line is scanned once
 * by indexOf (timestamps give most lines two or three colons, each costing one charCode switch):
 * - Java: `(Exception|Error|Throwable|V8 errors stack trace)` followed by `:` (upstream also takes
 *   `\r`/`\n`; lines here have none, so the end of the line counts instead, see javaAtEnd). Unlike
 *   Fluent Bit's port (`(.)Exception`) the word may open the line: Node's plain `Error: boom` does.
 * - Go: `\bpanic: ` and `http: panic serving` (net/http's recovered handler panic, whose stack
 *   follows on the next line).
 */
function startAtColons(s: string): number {
  for (let i = s.indexOf(':'); i > 0; i = s.indexOf(':', i + 1)) {
    switch (s.charCodeAt(i - 1)) {
      case 110 /* n */:
        if (endsAt(s, i, 'Exception')) return JAVA_EXC;
        break;
      case 114 /* r */:
        if (endsAt(s, i, 'Error')) return JAVA_EXC;
        break;
      case 101 /* e */:
        if (endsAt(s, i, 'Throwable') || endsAt(s, i, 'V8 errors stack trace')) return JAVA_EXC;
        break;
      case 99 /* c */:
        if (endsAt(s, i, 'panic') && (i === 5 || !isWordChar(s.charCodeAt(i - 6))) && s.charCodeAt(i + 1) === SPACE) {
          return GO_PANIC;
        }
        break;
      case 112 /* p */:
        if (endsAt(s, i, 'http') && s.startsWith(' panic serving ', i + 1)) return GO_GOROUTINE;
        break;
    }
  }
  return javaAtEnd(s) ? JAVA_EXC : REJECT;
}

/** `java.lang.StackOverflowError`, `Exception in thread "main" java.lang.NullPointerException`. */
function javaAtEnd(s: string): boolean {
  const n = s.length;
  switch (s.charCodeAt(n - 1)) {
    case 110 /* n */:
      return endsAt(s, n, 'Exception');
    case 114 /* r */:
      return endsAt(s, n, 'Error');
    case 101 /* e */:
      return endsAt(s, n, 'Throwable') || endsAt(s, n, 'V8 errors stack trace');
    default:
      return false;
  }
}

function isJavaStart(s: string): boolean {
  return startAtColons(s) === JAVA_EXC;
}

/**
 * Node's preamble of an uncaught error: `/app/src/x.js:41`, `file:///app/x.mjs:3`,
 * `node:internal/process/promises:391`. Only reached for lines ending in a digit.
 */
function isNodeLocation(s: string): boolean {
  const colon = s.lastIndexOf(':');
  if (colon <= 0) return false;
  for (let i = colon + 1; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  let ext = colon - 2; // where `js` / `ts` would start
  if (!(s.startsWith('js', ext) || s.startsWith('ts', ext))) {
    if (!s.startsWith('node:')) return false;
  } else {
    const m = s.charCodeAt(ext - 1);
    if (m === 109 /* m */ || m === 99 /* c */) ext--;
    if (s.charCodeAt(ext - 1) !== 46 /* . */) return false;
  }
  return s.indexOf(' ') < 0 && s.indexOf('\t') < 0;
}

/** V8's marker under the failing expression: spaces and `^` only. */
function isCaretLine(s: string): boolean {
  let carets = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 94 /* ^ */) carets++;
    else if (!isBlankOrTab(c)) return false;
  }
  return carets > 0;
}

/** Which group, if any, a line opens in auto mode. The caller has ruled out empty and `{` lines. */
function autoStart(s: string): number {
  const c0 = s.charCodeAt(0);
  if (c0 === 84 /* T */) {
    if (s === TRACEBACK) return PY_FRAMES;
  } else if (c0 === 102 /* f */) {
    // Go's runtime throw (deadlock, concurrent map writes): panic's layout, not in upstream.
    if (s.startsWith('fatal error: ')) return GO_PANIC;
  }
  const last = s.charCodeAt(s.length - 1);
  if (last >= 48 && last <= 57 && isNodeLocation(s)) return NODE_FILE;
  return startAtColons(s);
}

/**
 * Java frames and what may follow them: `^[\t ]+(eval )?at `, `^[\t ]*(Caused by|Suppressed):`,
 * `^[\t ]*... N (more|common frames omitted)`, and C#'s `--- End of inner exception stack trace
 * ---` / `--- End of stack trace from previous location ---` (Fluent Bit's additions) and its
 * ` ---> Inner.Exception: msg` (ours). A Node frame
 * ending in `{` opens the error's own properties (`code: 'ERR_X'`), printed up to a lone `}`.
 */
function javaFrame(s: string, c0: number): number {
  let i = 0;
  while (i < s.length && isBlankOrTab(s.charCodeAt(i))) i++;
  const c = s.charCodeAt(i);
  if (i > 0 && c === 97 /* a */ && s.startsWith('at ', i)) {
    return s.charCodeAt(s.length - 1) === LBRACE ? NODE_PROPS : JAVA_FRAMES;
  }
  if (i > 0 && c === 101 /* e */ && s.startsWith('eval at ', i)) return JAVA_FRAMES;
  if (c === 67 /* C */ && s.startsWith('Caused by:', i)) return JAVA_EXC;
  if (c === 83 /* S */ && s.startsWith('Suppressed:', i)) return JAVA_EXC;
  if (c === 46 /* . */ && JAVA_MORE.test(s)) return JAVA_FRAMES;
  if (c === 45 /* - */) {
    // .NET prints the inner exception inline: ` ---> System.ArgumentNullException: …`.
    if (s.startsWith('---> ', i)) return JAVA_EXC;
    if (i > 0 && s.startsWith('--- End of inner exception stack trace ---', i)) return JAVA_FRAMES;
    if (c0 === 45 && s.startsWith('--- End of stack trace from previous location')) return JAVA_FRAMES;
  }
  return REJECT;
}

/** The next state of an open auto group, given a line that is not JSON. */
function autoNext(state: number, s: string): number {
  const n = s.length;
  const c0 = n === 0 ? -1 : s.charCodeAt(0);
  switch (state) {
    case JAVA_EXC:
      if (n === 0) return JAVA_EXC_BLANK;
      if (JAVA_NESTED_LINE.test(s)) return JAVA_NESTED;
      return javaFrame(s, c0);
    case JAVA_EXC_BLANK:
      return n === 0 ? JAVA_EXC_BLANK : javaFrame(s, c0);
    case JAVA_NESTED:
      return n > 0 && isJavaStart(s) ? JAVA_EXC : REJECT;
    case JAVA_FRAMES:
      return n === 0 ? NODE_END_BLANK : javaFrame(s, c0);
    case NODE_PROPS:
      if (isBlankOrTab(c0)) return NODE_PROPS;
      return n === 1 && c0 === RBRACE ? JAVA_FRAMES : REJECT;
    case NODE_END_BLANK:
      // Node ≥ 18 closes an uncaught error with its version: nothing of the trace can follow.
      return s.startsWith('Node.js v') ? DONE : REJECT;
    case NODE_FILE:
      return n === 0 ? REJECT : NODE_SOURCE;
    case NODE_SOURCE:
      return isCaretLine(s) ? NODE_CARET : REJECT;
    case NODE_CARET:
      if (n === 0) return NODE_CARET_BLANK;
      return isJavaStart(s) ? JAVA_EXC : REJECT;
    case NODE_CARET_BLANK:
      // After `file:line`, source and caret, whatever comes is the thrown value's first line,
      // Error or not (`[UnhandledPromiseRejection: …] {`).
      if (n === 0) return REJECT;
      return s.charCodeAt(n - 1) === LBRACE ? NODE_PROPS : JAVA_EXC;

    case PY_FRAMES:
      // Upstream expects `File …` then exactly one code line, which 3.11+'s `^^^^`/`~~~^^` marker
      // lines (and frames without source) break: any indented line stays in the traceback. The
      // first line at column 0 is the exception line, which ends the frames.
      if (isBlankOrTab(c0)) return PY_FRAMES;
      return n > 0 && PY_EXCEPTION_LINE.test(s) ? PY_EXC : REJECT;
    case PY_EXC:
      // Upstream ends the trace here; we wait one more line for a chained traceback, whose
      // separator is `\nDuring handling…:\n\n` or `\nThe above exception…:\n\n`.
      return n === 0 ? PY_EXC_BLANK : REJECT;
    case PY_EXC_BLANK:
      return s === PY_DURING || s === PY_CAUSE ? PY_CHAIN : REJECT;
    case PY_CHAIN:
      return n === 0 ? PY_CHAIN_BLANK : REJECT;
    case PY_CHAIN_BLANK:
      return s === TRACEBACK ? PY_FRAMES : REJECT;

    case GO_PANIC:
      if (n === 0) return GO_GOROUTINE;
      if (c0 === 91 /* [ */ && s.startsWith('[signal ')) return GO_SIGNAL;
      // A re-panic: `panic: first [recovered]` then `\tpanic: second`.
      return isBlankOrTab(c0) ? GO_PANIC : REJECT;
    case GO_SIGNAL:
      return n === 0 ? GO_GOROUTINE : REJECT;
    case GO_GOROUTINE:
      if (c0 === 103 /* g */ && s.startsWith('goroutine ') && GO_GOROUTINE_HEADER.test(s)) return GO_FUNC;
      // A runtime throw prints the system stack first.
      return s === 'runtime stack:' ? GO_FUNC : REJECT;
    case GO_FUNC:
      if (n === 0) return GO_GOROUTINE;
      if (isBlankOrTab(c0)) return REJECT;
      if (c0 === 99 /* c */ && s.startsWith('created by ')) return GO_FILE;
      if (c0 === 46 /* . */ && s === '...additional frames elided...') return GO_FUNC;
      return s.indexOf('(') > 0 && GO_FUNCTION_LINE.test(s) ? GO_FILE : REJECT;
    case GO_FILE:
      return isBlankOrTab(c0) ? GO_FUNC : REJECT;
  }
  return REJECT;
}

function indentedNext(s: string): number {
  const n = s.length;
  if (n === 0) return INDENTED_BLANK;
  const c0 = s.charCodeAt(0);
  if (isBlankOrTab(c0)) return INDENTED;
  if (c0 === 67 /* C */ && s.startsWith('Caused by:')) return INDENTED;
  if (c0 === 46 /* . */ && JAVA_MORE.test(s)) return INDENTED;
  return REJECT;
}

/** Cuts to at most n code units without leaving half a surrogate pair at the end. */
function cut(s: string, n: number): string {
  if (n >= s.length) return s;
  const c = s.charCodeAt(n - 1);
  return s.slice(0, c >= 0xd800 && c <= 0xdbff ? n - 1 : n);
}

function single(line: MultilineLine): MultilineRecord {
  return {
    stream: line.stream,
    time: line.time,
    content: line.content,
    lines: 1,
    truncated: line.truncated === true,
    incomplete: line.incomplete === true ? true : undefined,
  };
}

/** One stream's group in progress. Reused: a file has two for its whole life. */
class Slot {
  state = START;
  /** Committed lines; joined once when the group is emitted. */
  parts: string[] = [];
  /** Length of parts joined with `\n`. */
  size = 0;
  time = '';
  offset = 0;
  truncated = false;
  incomplete = false;
  /** When the last line was accepted, for the idle flush. */
  lastSeen = 0;
  /** Lines held tentatively (see TENTATIVE), in arrival order; undefined when none. */
  held: MultilineLine[] | undefined = undefined;

  heldFrom(): number | undefined {
    if (this.parts.length > 0) return this.offset;
    return this.held?.[0]!.offset;
  }
}

/**
 * Groups one file's logical lines into records, keeping stdout and stderr apart: a trace written to
 * stderr never joins a line from stdout, even when the app logged its message on stdout and the
 * trace on stderr (those come out as separate records). One grouper per file (per inode), like
 * PartialMerger; a journal source would use one per (`_SYSTEMD_UNIT`, `_PID`), on one stream.
 *
 * Records of one stream leave in the order their lines came; a group held on one stream does not
 * delay the other. A group closes on the first line that does not continue it (that line is then
 * looked at afresh: it may pass straight through or open the next group), when a caller's timer
 * finds it idle (`flush`), when it reaches `maxLines` or `maxBytes`, and at file end or shutdown
 * (`flushAll`). A line that opens no group is emitted at once, never held.
 *
 * A JSON line (first character `{`) is never grouped in any mode: apps that log JSON write one
 * record per line, and their messages often quote an exception (§5.3).
 *
 * At a limit the group so far is emitted whole and the trace's state is kept, so the rest of a
 * long trace comes out as further records of whole lines rather than being dropped; only a single
 * line longer than `maxBytes` is cut, and its record is marked `truncated`.
 */
export class MultilineGrouper {
  private readonly mode: number;
  private readonly pattern: RegExp | undefined;
  private readonly maxLines: number;
  private readonly maxBytes: number;
  private readonly slots: [Slot, Slot] = [new Slot(), new Slot()];
  private readonly onGroup: ((reason: MultilineFlushReason, lines: number) => void) | undefined;

  constructor(options: MultilineOptions) {
    const maxLines = options.maxLines ?? MULTILINE_DEFAULT_MAX_LINES;
    const maxBytes = options.maxBytes ?? MULTILINE_DEFAULT_MAX_BYTES;
    if (!(Number.isInteger(maxLines) && maxLines >= 1)) {
      throw new RangeError(`maxLines must be an integer of at least 1, got ${maxLines}`);
    }
    if (!(maxBytes >= 1)) throw new RangeError(`maxBytes must be at least 1, got ${maxBytes}`);
    this.maxLines = maxLines;
    this.maxBytes = maxBytes;
    this.onGroup = options.onGroup;
    switch (options.mode) {
      case 'auto':
        this.mode = MODE_AUTO;
        break;
      case 'indented':
        this.mode = MODE_INDENTED;
        break;
      case 'start_pattern': {
        const p = options.startPattern;
        if (p === undefined) throw new TypeError('start_pattern mode needs a startPattern');
        this.mode = MODE_PATTERN;
        // test() on a global or sticky regex starts at lastIndex: a stateful bug on every other line.
        this.pattern = p.global || p.sticky ? new RegExp(p.source, p.flags.replace(/[gy]/g, '')) : p;
        break;
      }
      default:
        throw new TypeError(`unknown multiline mode ${JSON.stringify(options.mode)}`);
    }
  }

  /**
   * Takes the next logical line of the file and appends to `out` the records it completes: none
   * (the line was held), the line itself, or a closed group followed by what the line became.
   * `now` (ms) is read only when a line is held, to time the group out; default Date.now().
   */
  push(line: MultilineLine, out: MultilineRecord[], now?: number): void {
    const slot = this.slots[line.stream === 'stdout' ? 0 : 1];
    if (slot.state === START) {
      this.begin(slot, line, out, now);
      return;
    }
    const s = line.content;
    const next = s.length > 0 && s.charCodeAt(0) === LBRACE ? REJECT : this.next(slot.state, s);
    if (next === REJECT) {
      this.reject(slot, line, out, now);
      return;
    }
    slot.lastSeen = now ?? Date.now();
    slot.state = next;
    if (TENTATIVE[next] === 1) {
      const held = slot.held ?? (slot.held = []);
      held.push(line);
      // Blank lines after a Java exception line may repeat: they count against the line cap too.
      if (slot.parts.length + held.length >= this.maxLines) this.commitHeld(slot, out);
      return;
    }
    if (slot.held !== undefined) this.commitHeld(slot, out);
    this.append(slot, line, out);
    if (next === DONE) {
      this.emit(slot, line.stream, out, 'complete');
      slot.state = START;
    }
  }

  /**
   * Emits the groups of streams whose last line was accepted at least idleMs before now (ms). The
   * caller runs this from a timer: waiting for the next line would keep the last trace of a quiet
   * container in memory, unsent and holding back the checkpoint, forever (§5.3).
   */
  flush(idleMs: number, now: number): MultilineRecord[] {
    return this.finish((slot) => now - slot.lastSeen >= idleMs, 'timeout');
  }

  /** Emits everything held (file finished, shutdown) and forgets it. */
  flushAll(reason: 'end_of_file' | 'shutdown' = 'end_of_file'): MultilineRecord[] {
    return this.finish(() => true, reason);
  }

  /**
   * Byte offset where the oldest held line starts, undefined when nothing is held. A checkpoint
   * must not move past it: after a restart the group is read again from its first line.
   */
  earliestHeldOffset(): number | undefined {
    const a = this.slots[0].heldFrom();
    const b = this.slots[1].heldFrom();
    if (a === undefined) return b;
    if (b === undefined) return a;
    return Math.min(a, b);
  }

  /** Where each stream's held lines start (absent: nothing held on that stream). */
  heldStarts(): { stdout?: number; stderr?: number } {
    const starts: { stdout?: number; stderr?: number } = {};
    const out = this.slots[0].heldFrom();
    const err = this.slots[1].heldFrom();
    if (out !== undefined) starts.stdout = out;
    if (err !== undefined) starts.stderr = err;
    return starts;
  }

  /** Streams with lines held (0-2). */
  heldCount(): number {
    return (this.slots[0].heldFrom() === undefined ? 0 : 1) + (this.slots[1].heldFrom() === undefined ? 0 : 1);
  }

  private begin(slot: Slot, line: MultilineLine, out: MultilineRecord[], now: number | undefined): void {
    const s = line.content;
    // Empty lines never open a group, nor do JSON lines.
    const state = s.length === 0 || s.charCodeAt(0) === LBRACE ? REJECT : this.start(s);
    if (state === REJECT) {
      out.push(single(line));
      return;
    }
    slot.state = state;
    slot.lastSeen = now ?? Date.now();
    if (TENTATIVE[state] === 1) slot.held = [line];
    else this.append(slot, line, out);
  }

  private start(s: string): number {
    switch (this.mode) {
      case MODE_AUTO:
        return autoStart(s);
      case MODE_INDENTED:
        return isBlankOrTab(s.charCodeAt(0)) ? REJECT : INDENTED;
      default:
        return this.pattern!.test(s) ? PATTERN : REJECT;
    }
  }

  private next(state: number, s: string): number {
    switch (this.mode) {
      case MODE_AUTO:
        return autoNext(state, s);
      case MODE_INDENTED:
        return indentedNext(s);
      default:
        return this.pattern!.test(s) ? REJECT : PATTERN;
    }
  }

  /**
   * The line does not continue the group: emit what is committed, then replay the held lines and
   * the line itself from the start state. The first held line of a group that held everything (a
   * preamble that never got its error line) is emitted as it is, since replaying it would open the
   * same group again; the others may pass through or open a new group. Ends: every replay consumes
   * at least one line.
   */
  private reject(slot: Slot, line: MultilineLine, out: MultilineRecord[], now: number | undefined): void {
    const held = slot.held;
    slot.held = undefined;
    const hadLines = slot.parts.length > 0;
    this.emit(slot, line.stream, out, 'complete');
    slot.state = START;
    if (held !== undefined) {
      let i = 0;
      if (!hadLines) out.push(single(held[i++]!));
      for (; i < held.length; i++) this.push(held[i]!, out, now);
    }
    this.push(line, out, now);
  }

  private commitHeld(slot: Slot, out: MultilineRecord[]): void {
    const held = slot.held!;
    slot.held = undefined;
    for (let i = 0; i < held.length; i++) this.append(slot, held[i]!, out);
  }

  /** Adds a committed line, emitting the group first or after when a limit is reached. */
  private append(slot: Slot, line: MultilineLine, out: MultilineRecord[]): void {
    let s = line.content;
    let full = false;
    if (slot.parts.length > 0 && slot.size + 1 + s.length > this.maxBytes) this.emit(slot, line.stream, out, 'max_bytes');
    if (slot.parts.length === 0) {
      slot.time = line.time;
      slot.offset = line.offset;
      if (s.length > this.maxBytes) {
        s = cut(s, this.maxBytes);
        full = true;
      }
      slot.size = s.length;
    } else {
      slot.size += 1 + s.length;
    }
    slot.parts.push(s);
    if (full || line.truncated === true) slot.truncated = true;
    if (line.incomplete === true) slot.incomplete = true;
    // A cut line filled the group: nothing more fits, so do not hold it.
    if (full) this.emit(slot, line.stream, out, 'max_bytes');
    else if (slot.parts.length >= this.maxLines) this.emit(slot, line.stream, out, 'max_lines');
  }

  /** Emits the committed lines as one record and empties the group; the state is the caller's. */
  private emit(slot: Slot, stream: 'stdout' | 'stderr', out: MultilineRecord[], reason: MultilineFlushReason): void {
    const parts = slot.parts;
    const n = parts.length;
    if (n === 0) return;
    out.push({
      stream,
      time: slot.time,
      content: n === 1 ? parts[0]! : parts.join('\n'),
      lines: n,
      truncated: slot.truncated,
      incomplete: slot.incomplete ? true : undefined,
    });
    parts.length = 0;
    slot.size = 0;
    slot.truncated = false;
    slot.incomplete = false;
    this.onGroup?.(reason, n);
  }

  private finish(due: (slot: Slot) => boolean, reason: MultilineFlushReason): MultilineRecord[] {
    const out: MultilineRecord[] = [];
    const [a, b] = this.slots;
    const takeA = a.state !== START && due(a);
    const takeB = b.state !== START && due(b);
    // Oldest first, so records leave in the order their lines started in the file.
    if (takeA && takeB && (b.heldFrom() ?? Infinity) < (a.heldFrom() ?? Infinity)) {
      this.close(b, 'stderr', out, reason);
      this.close(a, 'stdout', out, reason);
    } else {
      if (takeA) this.close(a, 'stdout', out, reason);
      if (takeB) this.close(b, 'stderr', out, reason);
    }
    return out;
  }

  /** Ends a group with no next line to decide the held ones: they go out as they are. */
  private close(slot: Slot, stream: 'stdout' | 'stderr', out: MultilineRecord[], reason: MultilineFlushReason): void {
    this.emit(slot, stream, out, reason);
    const held = slot.held;
    slot.held = undefined;
    slot.state = START;
    if (held !== undefined) for (const line of held) out.push(single(line));
  }
}
