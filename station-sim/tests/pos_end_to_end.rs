//! Live orders from the POS: `scenarios/demo.toml` (2 stations x 5 orders with a missing
//! item, an extra item, a wrong quantity and an unknown order) with an empty
//! `orders_file`. The point of sale stores each known order's expected items through
//! `PUT /api/expected-orders/{id}` while the stations run: about half at start (before the
//! bag is complete), the others once `/api/orders` shows them `awaiting-order` (after it
//! is complete); the unknown order gets none and ends `unknown-order` after
//! `expected_wait_s`. The orchestrator announces each result to a webhook here (signed),
//! to mosquitto (read by `mosquitto_sub`) and on `/api/events` (read by an SSE client).
//!
//! Checks: every order's status and differences; exactly one webhook event per final
//! result (duplicates by `Idempotency-Key` dropped and reported), every signature valid,
//! `order.mismatch` exactly for the mismatch orders and the event's data the stored
//! result; MQTT and SSE each carry every order event; `station.state` shows each station
//! `running` on all three. Prints the orders and the latency from the result's write to
//! its receipt on each channel.

use std::collections::{BTreeMap, BTreeSet};

use hmac::{Hmac, Mac};
use oa_contract::events::Event;
use sha2::Sha256;
use station_sim::run::{self, PosPut, PutWhen};
use station_sim::{Plan, Scenario};

/// Long enough for the late PUTs (they come within a second of `awaiting-order`), short
/// enough for the unknown order to end `unknown-order` within the test.
const EXPECTED_WAIT_S: u32 = 20;

fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// Nearest-rank percentile of sorted values.
fn pct(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn figures(name: &str, mut v: Vec<i64>) -> String {
    v.sort_unstable();
    format!(
        "{name}: p50 {} ms, p95 {} ms, max {} ms ({} events)",
        pct(&v, 50.0),
        pct(&v, 95.0),
        v.last().copied().unwrap_or(0),
        v.len()
    )
}

#[test]
fn pos_orders_put_live_are_validated_and_announced_on_every_channel() {
    let scenario = run::scenario_path("demo.toml");
    let truth = Plan::new(Scenario::load(&scenario).unwrap())
        .unwrap()
        .ground_truth();
    // The unknown orders get no PUT; the others, per station, alternately at start and
    // once awaiting.
    let unknown: Vec<&str> = truth
        .orders
        .iter()
        .filter(|e| e.status == "unknown-order")
        .map(|e| e.order_id.as_str())
        .collect();
    assert!(!unknown.is_empty(), "the demo has an unknown order");
    let mut puts = Vec::new();
    let mut per_station: BTreeMap<&str, usize> = BTreeMap::new();
    for e in truth.orders.iter().filter(|e| e.status != "unknown-order") {
        let n = per_station.entry(&e.station_id).or_default();
        let mut items: BTreeMap<String, u32> = BTreeMap::new();
        for i in &e.ordered {
            *items.entry(i.name.clone()).or_default() += i.quantity;
        }
        puts.push(PosPut {
            station_id: e.station_id.clone(),
            order_id: e.order_id.clone(),
            items: items.into_iter().collect(),
            when: if n.is_multiple_of(2) {
                PutWhen::AtStart
            } else {
                PutWhen::WhenAwaiting
            },
        });
        *n += 1;
    }

    let pos = run::run_with_pos(&scenario, "pos", &puts, EXPECTED_WAIT_S);
    let out = &pos.outcome;
    let mut failures: Vec<String> = Vec::new();

    // The orders.
    let mut table = format!(
        "{:<10} {:<6} {:<32} {:<14} {:<14} {}\n",
        "station", "order", "PUT", "expected", "got", "check"
    );
    for e in &out.truth.orders {
        let rec = pos
            .puts
            .iter()
            .find(|r| r.put.station_id == e.station_id && r.put.order_id == e.order_id);
        let when = match rec {
            None if pos.not_put.iter().any(|(p, _)| p.order_id == e.order_id) => {
                "asked, never PUT".to_string()
            }
            None => "none".to_string(),
            Some(r) => format!(
                "{} bag ({}{})",
                if r.bag_complete { "after" } else { "before" },
                match r.put.when {
                    PutWhen::AtStart => "at start",
                    PutWhen::WhenAwaiting => "when awaiting",
                },
                match &r.reply {
                    Ok(s) => format!(", {s}"),
                    Err(e) => format!(", FAILED {e}"),
                }
            ),
        };
        let got = out
            .results
            .get(&(e.station_id.clone(), e.order_id.clone()))
            .and_then(|r| r["status"].as_str())
            .unwrap_or("nothing");
        let check = out.result_matches(e);
        if let Err(why) = &check {
            failures.push(format!("{}/{}: {why}", e.station_id, e.order_id));
        }
        table.push_str(&format!(
            "{:<10} {:<6} {:<32} {:<14} {:<14} {}\n",
            e.station_id,
            e.order_id,
            when,
            e.status,
            got,
            check.err().unwrap_or_else(|| "ok".into())
        ));
    }
    eprintln!("{table}\n{}\nran in {:.0} s", out.evaluate(), out.seconds);

    // The PUTs: each when it was meant to be.
    for (p, why) in &pos.not_put {
        failures.push(format!("{}/{}: not PUT: {why}", p.station_id, p.order_id));
    }
    for r in &pos.puts {
        let who = format!("{}/{}", r.put.station_id, r.put.order_id);
        if let Err(e) = &r.reply {
            failures.push(format!("{who}: PUT failed: {e}"));
        }
        match r.put.when {
            PutWhen::AtStart if r.bag_complete => failures.push(format!(
                "{who}: PUT at start, but its bag was already complete"
            )),
            PutWhen::WhenAwaiting
                if !r.bag_complete || r.status_before.as_deref() != Some("awaiting-order") =>
            {
                failures.push(format!(
                    "{who}: late PUT without a complete bag awaiting its order ({:?})",
                    r.status_before
                ))
            }
            _ => {}
        }
    }
    for p in &puts {
        if unknown.contains(&p.order_id.as_str()) {
            failures.push(format!("{}: an unknown order was PUT", p.order_id));
        }
    }

    // The webhook: signatures, one event per result, the mismatch type exactly for the
    // mismatch orders, the stored result as data.
    let mut webhook: BTreeMap<String, (u64, Event)> = BTreeMap::new();
    let mut duplicates: BTreeMap<String, usize> = BTreeMap::new();
    for d in &pos.webhook {
        let key = d.header("idempotency-key").unwrap_or("").to_string();
        let want = signature(&pos.webhook_secret, &d.body);
        if d.header("x-oa-signature") != Some(want.as_str()) {
            failures.push(format!(
                "webhook {key}: signature {:?} does not verify",
                d.header("x-oa-signature")
            ));
        }
        let e: Event = match serde_json::from_slice(&d.body) {
            Ok(e) => e,
            Err(err) => {
                failures.push(format!("webhook {key}: not an event ({err})"));
                continue;
            }
        };
        if e.id != key {
            failures.push(format!("webhook: Idempotency-Key {key} for event {}", e.id));
        }
        if d.header("x-oa-event-type") != Some(e.kind.as_str()) {
            failures.push(format!(
                "webhook {key}: X-OA-Event-Type {:?} for type {}",
                d.header("x-oa-event-type"),
                e.kind
            ));
        }
        match webhook.entry(key) {
            std::collections::btree_map::Entry::Occupied(o) => {
                *duplicates.entry(o.key().clone()).or_default() += 1;
            }
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert((d.received_ms, e));
            }
        }
    }
    let order_events: Vec<&Event> = webhook
        .values()
        .map(|(_, e)| e)
        .filter(|e| e.order_id.is_some())
        .collect();
    let mut per_order: BTreeMap<(String, String), Vec<&Event>> = BTreeMap::new();
    for e in &order_events {
        per_order
            .entry((e.station_id.clone(), e.order_id.clone().unwrap()))
            .or_default()
            .push(e);
    }
    for (key, result) in &out.results {
        let Some(events) = per_order.get(key) else {
            failures.push(format!("{}/{}: no webhook event", key.0, key.1));
            continue;
        };
        if events.len() != 1 {
            let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
            failures.push(format!(
                "{}/{}: {} webhook events {ids:?}",
                key.0,
                key.1,
                ids.len()
            ));
        }
        let e = events[0];
        let mismatch = result["status"] == "mismatch";
        let want = if mismatch {
            "order.mismatch"
        } else {
            "order.completed"
        };
        if e.kind != want {
            failures.push(format!(
                "{}/{}: event {} for a {} result",
                key.0, key.1, e.kind, result["status"]
            ));
        }
        if let Some(t) = out
            .truth
            .orders
            .iter()
            .find(|t| t.station_id == key.0 && t.order_id == key.1)
            && (t.status == "mismatch") != (e.kind == "order.mismatch")
        {
            failures.push(format!(
                "{}/{}: event {} for an order meant to be {}",
                key.0, key.1, e.kind, t.status
            ));
        }
        if &e.data != result {
            failures.push(format!(
                "{}/{}: the event's data is not the stored result",
                key.0, key.1
            ));
        }
    }
    for key in per_order.keys() {
        if !out.results.contains_key(key) {
            failures.push(format!(
                "{}/{}: a webhook event without a result",
                key.0, key.1
            ));
        }
    }

    // MQTT and SSE: every order event, on its topic / with its id and type.
    let mut mqtt: BTreeMap<String, (u64, Event)> = BTreeMap::new();
    for m in &pos.mqtt {
        match serde_json::from_str::<Event>(&m.payload) {
            Ok(e) => {
                let topic = format!("{}/{}/{}", pos.mqtt_topic, e.station_id, e.kind);
                if m.topic != topic {
                    failures.push(format!("MQTT {} on {} instead of {topic}", e.id, m.topic));
                }
                mqtt.entry(e.id.clone()).or_insert((m.received_ms, e));
            }
            Err(err) => failures.push(format!("MQTT on {}: not an event ({err})", m.topic)),
        }
    }
    let mut sse: BTreeMap<String, (u64, Event)> = BTreeMap::new();
    for m in &pos.sse {
        match serde_json::from_str::<Event>(&m.data) {
            Ok(e) => {
                if m.id != e.id || m.event != e.kind {
                    failures.push(format!(
                        "SSE id {:?} event {:?} for {} {}",
                        m.id, m.event, e.id, e.kind
                    ));
                }
                sse.entry(e.id.clone()).or_insert((m.received_ms, e));
            }
            Err(err) => failures.push(format!("SSE {}: not an event ({err})", m.id)),
        }
    }
    for e in &order_events {
        if !mqtt.contains_key(&e.id) {
            failures.push(format!("MQTT: {} missing", e.id));
        }
        if !sse.contains_key(&e.id) {
            failures.push(format!("SSE: {} missing", e.id));
        }
    }
    for (channel, events) in [("MQTT", &mqtt), ("SSE", &sse)] {
        let extra: Vec<&String> = events
            .keys()
            .filter(|id| id.starts_with("order:") && !webhook.contains_key(*id))
            .collect();
        if !extra.is_empty() {
            failures.push(format!(
                "{channel}: order events the webhook did not get: {extra:?}"
            ));
        }
    }

    // station.state: each station running, on every channel.
    let stations: BTreeSet<&str> = out
        .truth
        .orders
        .iter()
        .map(|e| e.station_id.as_str())
        .collect();
    for (channel, events) in [("webhook", &webhook), ("MQTT", &mqtt), ("SSE", &sse)] {
        for st in &stations {
            let running = events.values().any(|(_, e)| {
                e.kind == "station.state" && e.station_id == *st && e.data["state"] == "running"
            });
            if !running {
                failures.push(format!("{channel}: no station.state running for {st}"));
            }
        }
    }

    // Latency: from the result object's write (its file's mtime in the S3 server's
    // folder) to its receipt, and from the event's creation (`time_unix_ms`).
    let mut lat: BTreeMap<&str, (Vec<i64>, Vec<i64>)> = BTreeMap::new();
    for (channel, events) in [("webhook", &webhook), ("MQTT", &mqtt), ("SSE", &sse)] {
        let l = lat.entry(channel).or_default();
        for (at, e) in events.values() {
            let Some(order) = &e.order_id else { continue };
            if let Some(stored) = out.result_times.get(&(e.station_id.clone(), order.clone())) {
                l.0.push(*at as i64 - *stored as i64);
            }
            l.1.push(*at as i64 - e.time_unix_ms as i64);
        }
    }
    eprintln!(
        "webhook: {} deliveries, {} distinct events ({} order events), duplicates: {}",
        pos.webhook.len(),
        webhook.len(),
        order_events.len(),
        if duplicates.is_empty() {
            "none".to_string()
        } else {
            format!("{duplicates:?}")
        }
    );
    eprintln!(
        "MQTT: {} messages; SSE: {} messages (stream {})",
        pos.mqtt.len(),
        pos.sse.len(),
        pos.sse_ended.as_deref().unwrap_or("open at the end")
    );
    eprintln!(
        "latency, result stored (the result file's mtime in the S3 server's folder) -> received:"
    );
    for (channel, (stored, _)) in &lat {
        eprintln!("  {}", figures(channel, stored.clone()));
    }
    eprintln!("latency, event created (event.time_unix_ms) -> received:");
    for (channel, (_, created)) in &lat {
        eprintln!("  {}", figures(channel, created.clone()));
    }

    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}\n{table}\n{}",
        failures.len(),
        failures.join("\n"),
        out.log_tail
    );
    out.assert_segmentation();
}
