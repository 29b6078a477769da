//! The dashboard in a real browser (Debian's chromium, headless, which scripts/setup.sh
//! installs): the page served by the orchestrator's router runs its script, finds the API
//! open (no tokens configured) and reports the resources this bare state does not serve,
//! instead of a blank page.

use std::process::Command;
use std::sync::Arc;

use orchestrator::http::{self, AppState};
use orchestrator::shutdown::Shutdown;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_runs_in_chromium_and_says_what_the_api_lacks() {
    let shutdown = Shutdown::new();
    let listener = http::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(http::serve(
        listener,
        Arc::new(AppState::empty()),
        shutdown.listener(),
    ));
    let profile = std::env::temp_dir().join(format!("oa-chromium-{}", std::process::id()));
    let url = format!("{base}/");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--virtual-time-budget=5000",
                "--dump-dom",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(&url)
            .output()
            .expect("chromium runs (scripts/setup.sh installs it)")
    })
    .await
    .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !dom.is_empty(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Each of these is written by the script from what the API answered.
    for expected in [
        "<body data-auth=\"open\">",
        "data-live=\"off\"",
        "Live events: events are not published by this orchestrator",
        "No stations are supervised by this orchestrator",
        "expected orders are not served by this process",
    ] {
        assert!(
            dom.contains(expected),
            "no {expected:?} in the page:\n{dom}"
        );
    }
}
