import { z } from 'zod';
import { duration, size } from '../config/types.ts';
import { compileBodyRegex, RegexConfigError } from '../../parsers/regex_body.ts';

/**
 * The per-source keys of the enrichment and body-parsing stages (agent/enrichment/), spread into a
 * source's schema as one block so the source's own file states only its own keys.
 */

/** Glob lists (`*` any run of characters, `?` one) over label or annotation keys. */
const keyFilter = (include: string[]) =>
  z
    .strictObject({
      include: z.array(z.string().min(1)).default(include),
      exclude: z.array(z.string().min(1)).default([]),
    })
    .prefault({});

export const podMetadataConfig = z
  .strictObject({
    /** Add pod metadata from the API (needs `kubernetes.mode` other than disabled). */
    enabled: z.boolean().default(true),
    pod_labels: keyFilter(['*']),
    /** None by default: annotations are often large (last-applied-configuration) and rarely wanted. */
    pod_annotations: keyFilter([]),
    /** Empty include: no namespace labels, and no namespace watch. */
    namespace_labels: keyFilter([]),
    /**
     * Labels, annotations and namespace labels copied onto a pod's records, at most this many keys
     * and bytes (key and value) per pod; past either, the rest are left out (counted, logged once per
     * pod, and `kta.k8s.metadata.truncated` set on the records). Anyone who may create a pod can give
     * it 10,000 labels: without a budget every 40-byte line would carry a megabyte.
     */
    max_keys: z.number().int().min(0).max(10_000).default(64),
    max_bytes: size('8KiB').default(8 * 1024),
    /** A record whose pod the cache does not know yet is held this long for the watch to catch up. */
    wait_for_pod: duration('2s').default(2000),
    /** Bytes of held records per source; past it the oldest go out without pod metadata. */
    wait_max_bytes: size('4MiB').default(4 * 1024 * 1024),
  })
  .prefault({});

const regexPattern = z.string().superRefine((pattern, ctx) => {
  try {
    compileBodyRegex(pattern, '');
  } catch (err) {
    if (!(err instanceof RegexConfigError)) throw err;
    ctx.addIssue({ code: 'custom', message: err.reason });
  }
});

export const PARSER_NAMES = ['none', 'json', 'logfmt'] as const;
export type ParserName = (typeof PARSER_NAMES)[number];

/** `none`, `json`, `logfmt`, or `{ regex: '<pattern with named groups>' }`. */
export const parserConfig = z.union([z.enum(PARSER_NAMES), z.strictObject({ regex: regexPattern })]).default('none');
export type ParserConfig = z.infer<typeof parserConfig>;

export const enrichmentKeys = {
  kubernetes_metadata: podMetadataConfig,
  parser: parserConfig,
  /** Take the record's time from the body's `time`/`ts`/`timestamp`/`@timestamp` field (parsed bodies). */
  timestamp_from_body: z.boolean().default(false),
};

export type PodMetadataConfig = z.infer<typeof podMetadataConfig>;
