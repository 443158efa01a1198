import type { Counter, Registry } from 'prom-client';
import type { EventRule } from '../sources/kubernetes_events/config.ts';
import { sharedCounter } from './event_metrics.ts';
import { clampType, globMatch, normalizeComponent } from './event_match.ts';
import type { EventOccurrence, EventSink, SpanEventSink } from './observation.ts';

/**
 * User rules (issue 5 part 5): operators such as Rook or Longhorn emit their own reasons; a rule
 * maps (involved kind, reason, component, type) globs to a counter with bounded labels and/or to
 * span events handed to the span trackers — configuration, no code.
 */
export class EventRules implements EventSink {
  private readonly rules: { rule: EventRule; counter?: Counter<string> }[];
  private readonly spanSinks: SpanEventSink[];

  constructor(rules: readonly EventRule[], registry: Registry, spanSinks: SpanEventSink[]) {
    this.spanSinks = spanSinks;
    this.rules = rules.map((rule) => ({
      rule,
      counter: rule.counter ? sharedCounter(registry, rule.counter.name, rule.counter.help, [...rule.counter.labels]) : undefined,
    }));
  }

  onEvent(o: EventOccurrence): void {
    const component = normalizeComponent(o.component);
    let spanEvent = false;
    for (const { rule, counter } of this.rules) {
      if (!globMatch(o.regarding.kind, rule.kind) || !globMatch(o.reason, rule.reason) || !globMatch(component, rule.component) || !globMatch(o.type, rule.type)) continue;
      if (counter && rule.counter) {
        const values: Record<string, string> = { namespace: o.namespace, kind: o.regarding.kind, reason: o.reason, type: clampType(o.type), component };
        counter.inc(Object.fromEntries(rule.counter.labels.map((l) => [l, values[l]])), o.delta);
      }
      spanEvent ||= rule.span_event;
    }
    if (spanEvent) for (const s of this.spanSinks) s.onSpanEvent(o);
  }
}
