import { SpanKind, SpanStatusCode, TraceFlags, type Attributes, type HrTime, type Link, type SpanContext } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes, type Resource } from '@opentelemetry/resources';
import { BatchSpanProcessor, type ReadableSpan, type SpanProcessor, type TimedEvent } from '@opentelemetry/sdk-trace-base';
import type { SpanLog } from '../status/span_log.ts';
import { VERSION } from '../version.ts';
import { spanIdFor, traceIdFor, type TraceKey } from './span_ids.ts';

/**
 * Spans of cluster activity, built whole when they end and handed to the SDK's batch processor and
 * OTLP/HTTP exporter (which honour the OTEL_EXPORTER_OTLP_* variables).
 *
 * Why ReadableSpans and not `tracer.startSpan()`: every span here is finished work read back from
 * object timestamps (start and end in the past, often seen by another process), its ids must be
 * derived from object uids (the SDK's IdGenerator takes no arguments), and its resource is the
 * Kubernetes component that did the work (a tracer has one resource per provider). A ReadableSpan
 * says exactly that; the SDK still does batching, retries and the OTLP encoding.
 */

/** A span in the same trace, named by what makes its id. */
export interface SpanRef {
  readonly trace: TraceKey;
  readonly name: string;
  readonly objectUid: string;
  readonly subKey?: string;
}

export interface SpanPoint {
  readonly name: string;
  readonly timeMs: number;
  readonly attributes?: Attributes;
}

export type SpanResult = 'ok' | 'error' | 'unset';

export interface FinishedSpan extends SpanRef {
  /** The parent's name/object/sub-key (same trace). Absent: a root span. */
  readonly parent?: Omit<SpanRef, 'trace'>;
  readonly startMs: number;
  readonly endMs: number;
  readonly result: SpanResult;
  /** Status message for ERROR (truncated to 256 bytes). */
  readonly message?: string;
  readonly attributes: Attributes;
  readonly events?: readonly SpanPoint[];
  readonly links?: readonly SpanRef[];
  /** `service.name` of the resource: the component that did the work (`kubelet`, `kube-controller-manager`, a CSI driver). */
  readonly component: string;
  /** `k8s.node.name` on the resource, for kubelet work. */
  readonly nodeName?: string;
}

export interface SpanExportOptions {
  clusterName: string;
  /** kube-system namespace uid (the semconv `k8s.cluster.uid`), else the cluster name: part of every trace id. */
  clusterUid: string;
  /** Default: OTLP/HTTP protobuf through a BatchSpanProcessor. */
  processor?: SpanProcessor;
  /** Also keeps each span here, for the status page. */
  recent?: SpanLog;
}

const STATUS_MESSAGE_BYTES = 256;
export const EVENT_MESSAGE_BYTES = 1024;

export class SpanExport {
  private readonly processor: SpanProcessor;
  private readonly clusterName: string;
  private readonly clusterUid: string;
  private readonly resources = new Map<string, Resource>();
  private readonly scope = { name: 'kube-telemetry-agent', version: VERSION };
  private exported = 0;
  private readonly recent: SpanLog | undefined;

  constructor(o: SpanExportOptions) {
    this.clusterName = o.clusterName;
    this.clusterUid = o.clusterUid;
    this.recent = o.recent;
    this.processor = o.processor ?? new BatchSpanProcessor(new OTLPTraceExporter());
  }

  /** Spans handed to the exporter so far. */
  get count(): number {
    return this.exported;
  }

  traceId(trace: TraceKey): string {
    return traceIdFor(this.clusterUid, trace);
  }

  context(ref: SpanRef): SpanContext {
    return {
      traceId: traceIdFor(this.clusterUid, ref.trace),
      spanId: spanIdFor(this.clusterUid, ref.trace, ref.name, ref.objectUid, ref.subKey),
      traceFlags: TraceFlags.SAMPLED,
      isRemote: true,
    };
  }

  emit(s: FinishedSpan): void {
    const ctx = this.context(s);
    const endMs = Math.max(s.endMs, s.startMs);
    const events: TimedEvent[] = (s.events ?? []).map((e) => ({ name: e.name, time: hr(e.timeMs), attributes: e.attributes, droppedAttributesCount: 0 }));
    const links: Link[] = (s.links ?? []).map((l) => ({ context: this.context(l) }));
    const span: ReadableSpan = {
      name: s.name,
      kind: SpanKind.INTERNAL,
      spanContext: () => ctx,
      parentSpanContext: s.parent ? this.context({ ...s.parent, trace: s.trace }) : undefined,
      startTime: hr(s.startMs),
      endTime: hr(endMs),
      duration: hr(endMs - s.startMs),
      status:
        s.result === 'error'
          ? { code: SpanStatusCode.ERROR, message: truncateUtf8(s.message ?? '', STATUS_MESSAGE_BYTES) }
          : { code: s.result === 'ok' ? SpanStatusCode.OK : SpanStatusCode.UNSET },
      attributes: s.attributes,
      links,
      events,
      ended: true,
      resource: this.resource(s.component, s.nodeName),
      instrumentationScope: this.scope,
      droppedAttributesCount: 0,
      droppedEventsCount: 0,
      droppedLinksCount: 0,
    };
    this.exported++;
    this.processor.onEnd(span);
    this.recent?.add({
      traceId: ctx.traceId,
      spanId: ctx.spanId,
      parentSpanId: span.parentSpanContext?.spanId,
      name: s.name,
      startMs: s.startMs,
      endMs,
      result: s.result,
      message: s.message,
      component: s.component,
      attributes: namingAttributes(s.attributes),
    });
  }

  forceFlush(): Promise<void> {
    return this.processor.forceFlush();
  }

  shutdown(): Promise<void> {
    return this.processor.shutdown();
  }

  private resource(component: string, nodeName: string | undefined): Resource {
    const key = `${component}\n${nodeName ?? ''}`;
    let r = this.resources.get(key);
    if (!r) {
      r = resourceFromAttributes({
        'service.name': component,
        'service.namespace': 'kubernetes',
        'k8s.cluster.name': this.clusterName,
        'k8s.cluster.uid': this.clusterUid,
        ...(nodeName ? { 'k8s.node.name': nodeName } : {}),
      });
      this.resources.set(key, r);
    }
    return r;
  }
}

/** `kta.result` and what says how the span ended: `kta.timeout`, `kta.time.source` (§2.1). */
export function outcomeAttributes(result: string, timedOut: boolean, timeSource: 'observed' | undefined): Attributes {
  return {
    'kta.result': timedOut ? 'timeout' : result,
    ...(timedOut ? { 'kta.timeout': true } : {}),
    ...(timeSource ? { 'kta.time.source': timeSource } : {}),
  };
}

/** The `spans` setting against the environment: OTEL_SDK_DISABLED=true wins, as in every OpenTelemetry SDK. */
export function spansWanted(setting: boolean | 'auto'): boolean {
  const env = (name: string) => process.env[name]?.trim() ?? '';
  if (env('OTEL_SDK_DISABLED').toLowerCase() === 'true') return false;
  if (setting !== 'auto') return setting;
  return env('OTEL_EXPORTER_OTLP_ENDPOINT') !== '' || env('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT') !== '';
}

/** The attributes that say which objects a span is about (names, namespaces, reasons), for a person reading the status page. */
function namingAttributes(a: Attributes): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const [k, v] of Object.entries(a)) {
    if ((typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') && (k.startsWith('k8s.') || k.startsWith('kta.'))) out[k] = v;
  }
  return out;
}

function hr(ms: number): HrTime {
  const s = Math.floor(ms / 1000);
  return [s, Math.round((ms - s * 1000) * 1e6)];
}

export function truncateUtf8(s: string, maxBytes: number): string {
  if (Buffer.byteLength(s) <= maxBytes) return s;
  let out = Buffer.from(s).subarray(0, maxBytes).toString('utf8');
  if (out.endsWith('\uFFFD')) out = out.slice(0, -1); // a character cut in half
  return out;
}
