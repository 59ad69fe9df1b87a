//! The agent view, [`api::Agent`] as JSON, written straight from the scheduler's
//! [`AgentSnapshot`]: what `GET /agents/{id}`, a drain and `GET /agents` answer with. Building
//! the API type first cost a dozen allocations and two timestamps formatted through `fmt` per
//! agent, and a listing of a thousand agents made the view about 30% of the hub's CPU in
//! `hive bench`'s agent workload (BENCHMARKS.md, "Agent ops: the listing"). The bytes are
//! serde's of [`api::Agent`]: the tests parse what is written into that type and write it again
//! with serde, and the writer names every field of the snapshot (no `..`), so a field added to
//! it does not compile until it is decided here.

use hive_core::{AgentSnapshot, AgentSpec, Capability, CapabilityStats, RoutingView};
use hive_neural::Weights;
use hive_proto::api;
use hive_proto::fast_json::Writer;
use uuid::fmt::Hyphenated;

use crate::views::agent_state;

/// One agent, as `serde_json::to_vec` of the [`api::Agent`] it stands for writes it.
pub fn agent(snapshot: &AgentSnapshot, model: Option<&Weights>) -> Vec<u8> {
    let mut out = Writer::with_capacity(size(snapshot));
    write(&mut out, snapshot, model);
    out.into_bytes()
}

/// `{"items":[...]}` and `"next_cursor"` when there is one, as `serde_json::to_vec` of the
/// [`api::AgentList`] it stands for writes it.
pub fn agent_list(
    page: &[&AgentSnapshot],
    next_cursor: Option<&str>,
    model: Option<&Weights>,
) -> Vec<u8> {
    let mut out = Writer::with_capacity(32 + page.iter().map(|a| size(a)).sum::<usize>());
    out.bytes(br#"{"items":"#);
    out.list(page, |out, snapshot| write(out, snapshot, model));
    out.present(br#","next_cursor":"#, next_cursor, Writer::string);
    out.bytes(b"}");
    out.into_bytes()
}

/// About the bytes of an agent: room for its fixed fields and for each capability's entries.
fn size(snapshot: &AgentSnapshot) -> usize {
    256 + 256 * snapshot.spec.capabilities.len()
}

fn write(out: &mut Writer, snapshot: &AgentSnapshot, model: Option<&Weights>) {
    let AgentSnapshot {
        id,
        spec,
        state,
        running,
        connected_at,
        last_heartbeat,
        stats,
        routing,
    } = snapshot;
    let AgentSpec {
        name,
        capabilities,
        slots,
    } = &**spec;
    out.bytes(br#"{"id":"#);
    out.string(id.0.hyphenated().encode_lower(&mut [0; Hyphenated::LENGTH]));
    out.bytes(br#","name":"#);
    out.string(name);
    out.bytes(br#","state":"#);
    out.value(&agent_state(*state));
    out.bytes(br#","capabilities":"#);
    map(out, capabilities, |out, _, level| out.value(level));
    out.bytes(br#","slots":"#);
    out.number(*slots);
    out.bytes(br#","running":"#);
    out.number(*running);
    out.bytes(br#","connected_at":"#);
    out.timestamp(connected_at.0);
    out.bytes(br#","last_heartbeat":"#);
    out.timestamp(last_heartbeat.0);
    out.bytes(br#","stats":"#);
    map(out, stats, |out, _, stats| capability_stats(out, stats));
    out.bytes(br#","routing":"#);
    map(out, routing, |out, capability, view| {
        let predicted = model
            .and_then(|m| m.predict_typical(capability.as_str(), name, *slots))
            .map(|p| api::Predicted {
                latency_ms: p.latency_ms,
                success_probability: p.success,
            });
        routing_estimate(out, view, predicted);
    });
    out.bytes(b"}");
}

fn capability_stats(out: &mut Writer, stats: &CapabilityStats) {
    let CapabilityStats {
        completed,
        failed,
        total_latency_ms: _,
    } = stats;
    out.bytes(br#"{"completed":"#);
    out.number(*completed);
    out.bytes(br#","failed":"#);
    out.number(*failed);
    out.bytes(br#","mean_latency_ms":"#);
    out.value(&stats.mean_latency_ms());
    out.bytes(b"}");
}

fn routing_estimate(out: &mut Writer, view: &RoutingView, predicted: Option<api::Predicted>) {
    let RoutingView {
        success_probability,
        latency_ms,
        tail_ms,
        samples,
        share,
    } = view;
    out.bytes(br#"{"success_probability":"#);
    out.value(success_probability);
    out.bytes(br#","latency_ms":"#);
    out.value(latency_ms);
    out.bytes(br#","tail_ms":"#);
    out.value(tail_ms);
    out.bytes(br#","samples":"#);
    out.number(*samples);
    out.bytes(br#","share":"#);
    out.value(share);
    out.present(br#","predicted":"#, predicted.as_ref(), |out, predicted| {
        out.value(predicted)
    });
    out.bytes(b"}");
}

/// `{"capability":value,...}` as serde writes the `BTreeMap<String, _>` collected from
/// `entries`: in key order, and of equal keys the last. An agent's capabilities come in the
/// order its `hello` named them, its stats and routing sorted.
fn map<T>(
    out: &mut Writer,
    entries: &[(Capability, T)],
    write: impl Fn(&mut Writer, &Capability, &T),
) {
    if entries.is_sorted_by(|a, b| a.0 <= b.0) {
        sorted_map(out, entries.iter(), write);
    } else {
        let mut sorted: Vec<_> = entries.iter().collect();
        // Stable: of equal keys the last stays last.
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        sorted_map(out, sorted.into_iter(), write);
    }
}

fn sorted_map<'a, T: 'a>(
    out: &mut Writer,
    entries: impl Iterator<Item = &'a (Capability, T)>,
    write: impl Fn(&mut Writer, &Capability, &T),
) {
    out.bytes(b"{");
    let mut entries = entries.peekable();
    let mut first = true;
    while let Some((key, value)) = entries.next() {
        if entries.peek().is_some_and(|(next, _)| next == key) {
            continue;
        }
        if !first {
            out.bytes(b",");
        }
        first = false;
        out.string(key.as_str());
        out.bytes(b":");
        write(out, key, value);
    }
    out.bytes(b"}");
}

#[cfg(test)]
mod tests {
    use hive_core::{AgentId, AgentState, Timestamp};

    use super::*;

    fn capability(name: &str) -> Capability {
        Capability::parse(name, "capabilities").unwrap()
    }

    fn view(n: u64) -> RoutingView {
        RoutingView {
            success_probability: 0.1 + 0.2,
            latency_ms: (n > 0).then_some(3.0),
            tail_ms: Some(1e300),
            samples: n,
            share: 0.0,
        }
    }

    fn snapshot(id: u128, name: &str, capabilities: &[(&str, f64)]) -> AgentSnapshot {
        let names: Vec<&str> = capabilities.iter().map(|(c, _)| *c).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        AgentSnapshot {
            id: AgentId(uuid::Uuid::from_u128(id)),
            spec: AgentSpec {
                name: name.into(),
                capabilities: capabilities
                    .iter()
                    .map(|(c, level)| (capability(c), *level))
                    .collect(),
                slots: 4_000_000_000,
            }
            .into(),
            state: AgentState::Draining,
            running: 2,
            connected_at: Timestamp(1_796_450_462_345),
            last_heartbeat: Timestamp(u64::MAX),
            stats: sorted
                .iter()
                .enumerate()
                .map(|(n, c)| {
                    let stats = CapabilityStats {
                        completed: if n == 0 { 0 } else { u64::MAX / 2 },
                        failed: n as u64,
                        total_latency_ms: 7,
                    };
                    (capability(c), stats)
                })
                .collect(),
            routing: sorted
                .iter()
                .enumerate()
                .map(|(n, c)| (capability(c), view(n as u64)))
                .collect(),
        }
    }

    /// What is written parses as the API's type, and serde writes that back to the same bytes.
    fn parsed<T: serde::de::DeserializeOwned + serde::Serialize>(bytes: &[u8]) -> T {
        let text = std::str::from_utf8(bytes).unwrap();
        let value: T = serde_json::from_str(text).unwrap();
        assert_eq!(serde_json::to_string(&value).unwrap(), text);
        value
    }

    #[test]
    fn an_agent_is_serdes_bytes_of_the_api_agent_it_stands_for() {
        let plain = snapshot(1, "w", &[]);
        let agent: api::Agent = parsed(&super::agent(&plain, None));
        assert_eq!(agent.id, "00000000-0000-0000-0000-000000000001");
        assert_eq!(agent.state, api::AgentState::Draining);
        assert!(agent.capabilities.is_empty() && agent.routing.is_empty());
        assert_eq!((agent.slots, agent.running), (4_000_000_000, plain.running));
        assert_eq!(agent.connected_at, "2026-12-05T06:01:02.345Z");
        assert_eq!(agent.last_heartbeat, "9999-12-31T23:59:59.999Z");

        // Capabilities out of order, one named twice (the later level counts, as in a map
        // collected from them), and names and texts that need escaping.
        let full = snapshot(
            u128::MAX,
            "host \"a\\b\" \u{1}",
            &[("tr.b", 0.25), ("a:x/y", 1.0), ("tr.b", 0.5), ("0", 1e-9)],
        );
        let agent: api::Agent = parsed(&super::agent(&full, None));
        assert_eq!(agent.name, full.spec.name);
        let levels: Vec<_> = agent
            .capabilities
            .iter()
            .map(|(c, l)| (c.as_str(), *l))
            .collect();
        assert_eq!(levels, [("0", 1e-9), ("a:x/y", 1.0), ("tr.b", 0.5)]);
        let stats = &agent.stats["a:x/y"];
        assert_eq!((stats.completed, stats.failed), (u64::MAX / 2, 1));
        assert_eq!(stats.mean_latency_ms, Some(7.0 / (u64::MAX / 2) as f64));
        assert_eq!(agent.stats["0"].mean_latency_ms, None);
        let routing = &agent.routing["tr.b"];
        assert_eq!(routing.latency_ms, Some(3.0));
        assert_eq!((routing.samples, routing.tail_ms), (2, Some(1e300)));
        assert_eq!(agent.routing["0"].latency_ms, None);
        assert!(agent.routing.values().all(|r| r.predicted.is_none()));
    }

    #[test]
    fn a_listing_is_serdes_bytes_of_the_page_it_stands_for() {
        let agents = [
            snapshot(1, "a", &[]),
            snapshot(2, "b", &[("echo", 1.0)]),
            snapshot(3, "c\"", &[("y", 0.5), ("x", 0.5)]),
        ];
        let all: Vec<&AgentSnapshot> = agents.iter().collect();
        for (page, cursor) in [(&all[..0], None), (&all[..1], Some("c")), (&all[..], None)] {
            let list: api::AgentList = parsed(&agent_list(page, cursor, None));
            assert_eq!(list.next_cursor.as_deref(), cursor);
            let names: Vec<_> = list.items.iter().map(|a| a.name.as_str()).collect();
            let expected: Vec<_> = page.iter().map(|a| a.spec.name.as_str()).collect();
            assert_eq!(names, expected);
            for (item, snapshot) in list.items.iter().zip(page) {
                let alone = super::agent(snapshot, None);
                assert_eq!(serde_json::to_vec(item).unwrap(), alone);
            }
        }
    }
}
