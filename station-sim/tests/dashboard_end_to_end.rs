//! The dashboard in a real browser while `scenarios/demo.toml` plays: Debian's
//! chromedriver and headless chromium (scripts/setup.sh) against the orchestrator with its
//! API behind tokens. A wrong token gets the sign-in prompt and no data; with a read token
//! both stations show as running, every result appears without a reload with the status
//! the store holds, and a mismatch opens with its frames and its differences marked as the
//! result says. Screenshots go to `target/dashboard/`, where CI keeps them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use station_sim::run;
use station_sim::webdriver::{Driver, Session};

/// What the browser showed.
#[derive(Debug, Default)]
struct Seen {
    /// After a wrong token: body[data-auth], whether #app is hidden, its rows and cards,
    /// and the sign-in prompt's reason.
    refused_auth: String,
    refused_app_hidden: bool,
    refused_rows: u64,
    refused_cards: u64,
    refused_reason: String,
    /// Station cards once both ran: id -> data-state.
    stations: BTreeMap<String, String>,
    /// Feed rows when the page was signed in, and at the end: key -> data-status.
    rows_at_signin: u64,
    rows: BTreeMap<String, String>,
    /// A marker set on `window` after sign-in, still there at the end (no reload).
    no_reload: bool,
    /// The mismatch opened: its key, its item rows (item -> data-diff), frames shown.
    opened: String,
    diffs: BTreeMap<String, String>,
    frames_shown: u64,
    /// Bars in the charts: hours, stations with a mismatch rate.
    chart_hours: u64,
    chart_stations: u64,
}

fn target_dir() -> PathBuf {
    run::release_dir()
        .parent()
        .expect("release/ has a parent")
        .join("dashboard")
}

fn count(s: &Session<'_>, selector: &str) -> Result<u64, String> {
    s.eval(
        "return document.querySelectorAll(arguments[0]).length",
        &[Value::from(selector)],
    )?
    .as_u64()
    .ok_or_else(|| format!("{selector}: no count"))
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn watch(live: &run::Live) -> Result<Seen, String> {
    let shots = target_dir();
    let driver = Driver::start(&live.dir)?;
    let s = driver.session(1280, 1000)?;
    let mut seen = Seen::default();
    s.goto(&format!("{}/", live.base_url))?;
    s.wait_for(
        "the sign-in prompt",
        "return document.body.dataset.auth === 'signed-out'",
        Duration::from_secs(20),
    )?;

    // A wrong token: refused, and nothing of the API shown.
    s.type_into("#token", "not-a-token-of-this-orchestrator")?;
    s.click("#signin-form button[type=submit]")?;
    seen.refused_reason = text(&s.wait_for(
        "the refusal",
        "const r = document.getElementById('signin-reason').textContent; \
         return /refused/.test(r) ? r : null",
        Duration::from_secs(20),
    )?);
    seen.refused_auth = text(&s.eval("return document.body.dataset.auth", &[])?);
    seen.refused_app_hidden =
        s.eval("return document.getElementById('app').hidden", &[])? == Value::Bool(true);
    seen.refused_rows = count(&s, "#orders tr")?;
    seen.refused_cards = count(&s, "#stations .station")?;
    s.screenshot(&shots.join("signin-refused.png"))?;

    s.type_into("#token", &live.read_token)?;
    s.click("#signin-form button[type=submit]")?;
    s.wait_for(
        "signed in",
        "return document.body.dataset.auth === 'signed-in'",
        Duration::from_secs(20),
    )?;
    s.eval("window.__oaNoReload = true; return null", &[])?;
    seen.rows_at_signin = count(&s, "#orders tr")?;

    let states = s.wait_for(
        "every station running",
        &format!(
            "const c = [...document.querySelectorAll('#stations .station')]; \
             return c.length !== {} || !c.every((e) => e.dataset.state === 'running') \
               ? null : Object.fromEntries(c.map((e) => [e.dataset.station, e.dataset.state]))",
            live.stations.len()
        ),
        Duration::from_secs(60),
    )?;
    seen.stations = serde_json::from_value(states).map_err(|e| e.to_string())?;

    // Every result, live: as many rows as orders, none still waiting for its order.
    let rows = s.wait_for(
        "every result in the feed",
        &format!(
            "const r = [...document.querySelectorAll('#orders tr[data-order-key]')]; \
             return r.length >= {} && r.every((e) => e.dataset.status !== 'awaiting-order') \
               ? Object.fromEntries(r.map((e) => [e.dataset.orderKey, e.dataset.status])) : null",
            live.expected
        ),
        Duration::from_secs(240),
    )?;
    seen.rows = serde_json::from_value(rows).map_err(|e| e.to_string())?;
    seen.no_reload = s.eval("return window.__oaNoReload === true", &[])? == Value::Bool(true);
    seen.chart_hours = count(&s, "#chart-orders g[data-hour]")?;
    seen.chart_stations = count(&s, "#chart-mismatch g[data-station]")?;
    s.screenshot(&shots.join("demo.png"))?;

    // A mismatch opens with its frames and its differences.
    s.click("#orders tr[data-status=mismatch]")?;
    let opened = s.wait_for(
        "the mismatch's detail with its frames",
        "const d = document.getElementById('detail'); \
         const f = [...d.querySelectorAll('.frame')]; \
         return d.dataset.state === 'ready' && f.length > 0 \
           && f.every((e) => e.dataset.loaded !== 'loading') ? d.dataset.orderKey : null",
        Duration::from_secs(30),
    )?;
    seen.opened = text(&opened);
    seen.frames_shown = s
        .eval(
            "return [...document.querySelectorAll('#detail .frame img')] \
               .filter((i) => i.complete && i.naturalWidth > 0).length",
            &[],
        )?
        .as_u64()
        .unwrap_or(0);
    let diffs = s.eval(
        "return Object.fromEntries([...document.querySelectorAll('#detail table.items tr[data-item]')] \
           .map((e) => [e.dataset.item, e.dataset.diff]))",
        &[],
    )?;
    seen.diffs = serde_json::from_value(diffs).map_err(|e| e.to_string())?;
    s.screenshot(&shots.join("demo-mismatch.png"))?;
    Ok(seen)
}

/// item -> the diff the dashboard should mark for it, from the stored result.
fn expected_diffs(result: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (field, diff) in [
        ("expected", "ok"),
        ("detected", "ok"),
        ("missing", "missing"),
        ("extra", "extra"),
    ] {
        for i in result[field].as_array().into_iter().flatten() {
            let name = text(&i["name"]);
            if diff != "ok" || !out.contains_key(&name) {
                out.insert(name, diff.to_string());
            }
        }
    }
    for q in result["quantity_mismatch"].as_array().into_iter().flatten() {
        out.insert(text(&q["name"]), "quantity".to_string());
    }
    out
}

#[test]
fn the_dashboard_shows_the_demo_live_and_a_wrong_token_nothing() {
    let (out, seen) = run::run_watched(&run::scenario_path("demo.toml"), "dashboard", watch);
    let table = out.table();
    let seen = seen.unwrap_or_else(|e| panic!("in the browser: {e}\n{table}"));
    eprintln!("{seen:#?}\nscreenshots in {}", target_dir().display());

    assert_eq!(seen.refused_auth, "signed-out", "{seen:?}");
    assert!(seen.refused_app_hidden, "{seen:?}");
    assert_eq!((seen.refused_rows, seen.refused_cards), (0, 0), "{seen:?}");
    assert!(seen.refused_reason.contains("401"), "{seen:?}");

    assert_eq!(seen.stations.len(), 2, "{seen:?}");
    assert!(seen.stations.values().all(|s| s == "running"), "{seen:?}");

    // Every stored result is in the feed with its status, and results arrived live.
    let stored: BTreeMap<String, String> = out
        .results
        .iter()
        .map(|((st, o), r)| (format!("{st}/{o}"), text(&r["status"])))
        .collect();
    assert_eq!(stored.len(), out.truth.orders.len(), "{table}");
    assert_eq!(seen.rows, stored, "feed against the store\n{table}");
    assert!(
        seen.rows_at_signin < stored.len() as u64,
        "every result was there before the page: nothing shown live ({seen:?})"
    );
    assert!(seen.no_reload, "the page reloaded");
    assert!(
        seen.chart_hours >= 1 && seen.chart_stations == 2,
        "{seen:?}"
    );

    let (st, o) = seen.opened.split_once('/').expect("station/order");
    let result = &out.results[&(st.to_string(), o.to_string())];
    assert_eq!(text(&result["status"]), "mismatch", "{seen:?}");
    assert_eq!(seen.diffs, expected_diffs(result), "{result:#}");
    assert!(seen.diffs.values().any(|d| d != "ok"), "{seen:?}");
    let selected = result["selected_frames"].as_array().map_or(0, Vec::len) as u64;
    assert!(
        selected > 0 && seen.frames_shown == selected,
        "{seen:?}\n{result:#}"
    );
}
