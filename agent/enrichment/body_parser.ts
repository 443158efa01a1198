import { parseJsonBody } from '../../parsers/json_body.ts';
import { parseLogfmt } from '../../parsers/logfmt.ts';
import { compileBodyRegex, type BodyRegex } from '../../parsers/regex_body.ts';
import { severityFromFields, severityFromText } from '../../parsers/severity.ts';
import { extractTimestamp } from '../../parsers/timestamp_extract.ts';
import type { LogRecord } from '../record.ts';
import type { ParserConfig, ParserName } from './config.ts';

/**
 * Turns a string body into fields: `json` (objects only, see parsers/json_body.ts), `logfmt`, or a
 * regex with named groups. Severity comes from the fields' level (`level`, `severity`, …) and,
 * with `timestamp_from_body`, the record's time from `time`/`ts`/`timestamp`/`@timestamp`.
 *
 * A body that does not parse (a plain line in a JSON container; a JSON array or scalar, which
 * stays text on purpose) keeps its original string and is counted as a parse error: nothing is
 * lost and the count says the parser does not fit. Records are fresh per line, so their body and
 * severity are set in place; attributes and resource objects are shared and not touched.
 */

export type BodyParse = (text: string) => Record<string, unknown> | undefined;

export interface ChosenParser {
  /** Label of telemetry_agent_parse_errors_total. */
  readonly name: string;
  readonly parse: BodyParse | undefined;
}

const json: BodyParse = (text) => parseJsonBody(text)?.body;
const BY_NAME: Record<ParserName, ChosenParser> = {
  none: { name: 'none', parse: undefined },
  json: { name: 'json', parse: json },
  logfmt: { name: 'logfmt', parse: parseLogfmt },
};

export function parserByName(name: ParserName): ChosenParser {
  return BY_NAME[name];
}

/** The parser a source's `parser` key names; a regex was already checked when the config loaded. */
export function parserFromConfig(config: ParserConfig, keyPath: string): ChosenParser {
  if (typeof config === 'string') return BY_NAME[config];
  const regex: BodyRegex = compileBodyRegex(config.regex, `${keyPath}.regex`);
  return { name: 'regex', parse: (text) => regex.match(text) };
}

/**
 * Parses `record`'s body in place; false when it is a string the parser could not read. A body
 * that stays text (no parser, or one that could not read it) gets its severity from the level word
 * at its start (`ERROR …`, `[warn] …`, klog's `E1121 …`; parsers/severity.ts), so every record
 * that says its level has a severity_number.
 */
export function parseRecordBody(record: LogRecord, parser: ChosenParser, timestampFromBody: boolean): boolean {
  const parse = parser.parse;
  if (typeof record.body !== 'string') return true;
  if (parse === undefined) {
    levelFromText(record, record.body);
    return true;
  }
  const fields = parse(record.body);
  if (fields === undefined) {
    levelFromText(record, record.body);
    return false;
  }
  record.body = fields;
  if (record.severityNumber === undefined) {
    const severity = severityFromFields(fields);
    if (severity) {
      record.severityText = severity.text;
      record.severityNumber = severity.number;
    }
  }
  if (timestampFromBody) {
    const t = extractTimestamp(fields);
    if (t) record.timestamp = t.timestamp;
  }
  return true;
}

function levelFromText(record: LogRecord, text: string): void {
  if (record.severityNumber !== undefined) return;
  const severity = severityFromText(text);
  if (severity) {
    record.severityText = severity.text;
    record.severityNumber = severity.number;
  }
}
