//! The agent view, [`api::Agent`] as JSON, written straight from the scheduler's
//! [`AgentSnapshot`]: what `GET /agents/{id}`, a drain and `GET /agents` answer with. Building
//! the API type first cost a dozen allocations and two timestamps formatted through `fmt` per
//! agent, and a listing of a thousand agents made the view about 30% of the hub's CPU in
//! `hive bench`'s agent workload (BENCHMARKS.md, "Agent ops: the listing"). The bytes are
//! serde's of [`api::Agent`]: the tests compare them with serde's bytes of the API type built
//! field by field, and the writer names every field of the snapshot (no `..`), so a field added
//! to it does not compile until it is decided here.

use hive_core::{AgentSnapshot, AgentSpec, Capability, CapabilityStats, RoutingView};
use hive_neural::Weights;
use hive_proto::api;
use hive_proto::fast_json::Writer;

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
    hive_proto::fast_json::page(
        page,
        |snapshot| size(snapshot),
        |out, snapshot| write(out, snapshot, model),
        |out| out.present(br#","next_cursor":"#, next_cursor, Writer::string),
    )
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
    crate::views::write_id(out, &id.0);
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
    use crate::views::rfc3339;

    fn capability(name: &str) -> Capability {
        Capability::parse(name, "capabilities").unwrap()
    }

    fn view(n: u64) -> RoutingView {
        RoutingView {
            success_probability: 0.1 + 0.2 * n as f64,
            latency_ms: (n > 0).then_some(3.0),
            tail_ms: Some(1e300),
            samples: n,
            share: 0.5 / (n as f64 + 3.0),
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

    /// The API type a snapshot stands for, built field by field as the hub built it before it
    /// wrote the view straight: serde's bytes of it are what the view must be.
    fn reference(snapshot: &AgentSnapshot) -> api::Agent {
        api::Agent {
            id: snapshot.id.to_string(),
            name: snapshot.spec.name.clone(),
            state: agent_state(snapshot.state),
            capabilities: snapshot
                .spec
                .capabilities
                .iter()
                .map(|(c, l)| (c.to_string(), *l))
                .collect(),
            slots: snapshot.spec.slots,
            running: snapshot.running,
            connected_at: rfc3339(snapshot.connected_at),
            last_heartbeat: rfc3339(snapshot.last_heartbeat),
            stats: snapshot
                .stats
                .iter()
                .map(|(c, s)| {
                    let stats = api::CapabilityStats {
                        completed: s.completed,
                        failed: s.failed,
                        mean_latency_ms: s.mean_latency_ms(),
                    };
                    (c.to_string(), stats)
                })
                .collect(),
            routing: snapshot
                .routing
                .iter()
                .map(|(c, r)| (c.to_string(), estimate(r, None)))
                .collect(),
        }
    }

    fn estimate(view: &RoutingView, predicted: Option<api::Predicted>) -> api::RoutingEstimate {
        api::RoutingEstimate {
            success_probability: view.success_probability,
            latency_ms: view.latency_ms,
            tail_ms: view.tail_ms,
            samples: view.samples,
            share: view.share,
            predicted,
        }
    }

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    fn snapshots() -> Vec<AgentSnapshot> {
        vec![
            snapshot(1, "w", &[]),
            snapshot(2, "b", &[("echo", 1.0)]),
            // Capabilities out of order, one named twice (the later level counts, as in a map
            // collected from them), and a name that needs escaping.
            snapshot(
                u128::MAX,
                "host \"a\\b\" \u{1}",
                &[("tr.b", 0.25), ("a:x/y", 1.0), ("tr.b", 0.5), ("0", 1e-9)],
            ),
        ]
    }

    #[test]
    fn an_agent_is_serdes_bytes_of_the_api_agent_it_stands_for() {
        for snapshot in snapshots() {
            let expected = serde_json::to_string(&reference(&snapshot)).unwrap();
            assert_eq!(text(agent(&snapshot, None)), expected);
        }
        // What the reference holds, so that it cannot agree with the view by sharing a mistake.
        let full = reference(&snapshots()[2]);
        assert_eq!(full.id, "ffffffff-ffff-ffff-ffff-ffffffffffff");
        assert_eq!(full.connected_at, "2026-12-05T06:01:02.345Z");
        assert_eq!(full.last_heartbeat, "9999-12-31T23:59:59.999Z");
        let levels: Vec<_> = full
            .capabilities
            .iter()
            .map(|(c, l)| (c.as_str(), *l))
            .collect();
        assert_eq!(levels, [("0", 1e-9), ("a:x/y", 1.0), ("tr.b", 0.5)]);
        assert_eq!(full.routing["tr.b"].success_probability, 0.1 + 0.2 * 2.0);
        assert_eq!(full.routing["tr.b"].share, 0.5 / 5.0);
        assert_eq!(full.stats["0"].mean_latency_ms, None);
    }

    #[test]
    fn a_prediction_is_written_as_serde_writes_it() {
        let predicted = api::Predicted {
            latency_ms: 1.5,
            success_probability: 0.875,
        };
        for (view, predicted) in [(view(1), Some(predicted)), (view(0), None)] {
            let mut out = Writer::with_capacity(64);
            routing_estimate(&mut out, &view, predicted);
            let expected = serde_json::to_string(&estimate(&view, predicted)).unwrap();
            assert_eq!(text(out.into_bytes()), expected);
        }
    }

    #[test]
    fn a_listing_is_serdes_bytes_of_the_page_it_stands_for() {
        let agents = snapshots();
        let all: Vec<&AgentSnapshot> = agents.iter().collect();
        for (page, cursor) in [(&all[..0], None), (&all[..1], Some("c")), (&all[..], None)] {
            let expected = api::AgentList {
                items: page.iter().map(|a| reference(a)).collect(),
                next_cursor: cursor.map(str::to_string),
            };
            assert_eq!(
                text(agent_list(page, cursor, None)),
                serde_json::to_string(&expected).unwrap()
            );
        }
    }
}
