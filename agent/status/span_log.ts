/**
 * The latest finished spans, kept in memory for the status page's waterfall (a few hundred, the
 * oldest forgotten first). Only what a person reads is kept: ids, name, times, outcome, the
 * component that did the work and the attributes that name the objects.
 */

export interface SpanSummary {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  startMs: number;
  endMs: number;
  result: 'ok' | 'error' | 'unset';
  message?: string;
  /** `service.name`: kubelet, kube-controller-manager, a CSI driver. */
  component: string;
  attributes: Record<string, string | number | boolean>;
}

export const SPAN_LOG_SIZE = 500;

export class SpanLog {
  private readonly max: number;
  private spans: SpanSummary[] = [];
  private total = 0;

  constructor(max = SPAN_LOG_SIZE) {
    this.max = max;
  }

  add(span: SpanSummary): void {
    this.total++;
    this.spans.push(span);
    if (this.spans.length > this.max * 2) this.spans = this.spans.slice(-this.max);
  }

  /** Newest last, at most `limit`. */
  latest(limit = this.max): SpanSummary[] {
    return this.spans.slice(-Math.min(limit, this.max));
  }

  /** Spans ever added. */
  get count(): number {
    return this.total;
  }
}
