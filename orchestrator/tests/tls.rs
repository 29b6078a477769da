//! HTTPS for the API: a certificate made by `openssl`, the real router served by
//! `http::serve_tls` on 127.0.0.1, and a client that trusts only the test CA.

use std::sync::Arc;
use std::time::Duration;

use orchestrator::config::Config;
use orchestrator::http::{self, AppState};
use orchestrator::shutdown::Shutdown;
use orchestrator::testing::{scratch_dir, test_pki};

#[tokio::test]
async fn the_api_answers_over_https_with_its_certificate_and_refuses_plain_http() {
    let dir = scratch_dir("tls");
    let pki = test_pki(&dir);
    let acceptor = http::tls::acceptor(&pki.cert, &pki.key).unwrap();
    let listener = http::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = Shutdown::new();
    let server = tokio::spawn(http::serve_tls(
        listener,
        Arc::new(AppState::empty()),
        acceptor,
        shutdown.listener(),
    ));
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&pki.ca).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .unwrap();
    let res = client
        .get(format!("https://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "ok\n");
    let res = client
        .get(format!("https://{addr}/api/orders/s/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404, "the same router, its JSON errors too");

    // Plain HTTP gets no answer, and a client that does not trust the CA refuses it.
    let plain = reqwest::Client::new()
        .get(format!("http://{addr}/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);
    let untrusting = reqwest::Client::builder()
        .tls_certs_only([])
        .build()
        .unwrap()
        .get(format!("https://{addr}/healthz"))
        .send()
        .await;
    assert!(untrusting.is_err(), "{untrusting:?}");

    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve_tls returns on shutdown")
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_tls_files_name_their_field() {
    let dir = scratch_dir("tls-bad");
    let pki = test_pki(&dir);
    let err = |cert: &std::path::Path, key: &std::path::Path| {
        http::tls::acceptor(cert, key).map(|_| ()).unwrap_err()
    };
    assert!(err(&dir.join("nope.pem"), &pki.key).starts_with("http.tls_cert"));
    assert!(err(&pki.cert, &dir.join("nope.key")).starts_with("http.tls_key"));
    // The CA's key does not go with the server's certificate.
    assert!(
        err(&pki.cert, &dir.join("ca.key")).contains("does not go with"),
        "{}",
        err(&pki.cert, &dir.join("ca.key"))
    );
    // A key without its certificate is refused when the configuration is loaded.
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = std::fs::read_to_string(here.join("orchestrator.example.toml")).unwrap();
    assert!(Config::from_toml_str(&example, here).is_ok());
    let toml = example.replacen("[http]\n", "[http]\ntls_key = \"leaf.key\"\n", 1);
    let e = Config::from_toml_str(&toml, here).unwrap_err();
    assert_eq!(e.field, "http.tls_cert", "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
