//! A W3C WebDriver client just large enough for the dashboard's browser tests: Debian's
//! `chromedriver` driving its headless `chromium` (scripts/setup.sh installs both), over
//! the same small HTTP/1.1 client as the point of sale ([`crate::pos::http`]). Clicks
//! and typing go through WebDriver's element commands, as a user's would; scripts only
//! read the page.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The key under which WebDriver hands over an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A `chromedriver` process on a free loopback port; killed when dropped.
pub struct Driver {
    child: Child,
    addr: String,
    profile: PathBuf,
}

impl Driver {
    /// Starts `chromedriver` and waits (up to 20 s) until it is ready; browser profiles
    /// go under `dir`.
    pub fn start(dir: &Path) -> Result<Driver, String> {
        let port = crate::pos::free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start chromedriver ({e}): scripts/setup.sh installs chromium-driver"
                )
            })?;
        let driver = Driver {
            child,
            addr: format!("127.0.0.1:{port}"),
            profile: dir.join("chromium-profile"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok((200, body)) = crate::pos::http(&driver.addr, "GET", "/status", None)
                && serde_json::from_slice::<Value>(&body)
                    .is_ok_and(|v| v["value"]["ready"] == json!(true))
            {
                return Ok(driver);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "chromedriver on {} is not ready after 20 s",
                    driver.addr
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A new headless browser window of `width` x `height` CSS pixels.
    pub fn session(&self, width: u32, height: u32) -> Result<Session<'_>, String> {
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-dev-shm-usage", format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", self.profile.display()),
                ],
            },
        }}});
        let v = call(&self.addr, "POST", "/session", Some(&caps))?;
        let id = v["sessionId"]
            .as_str()
            .ok_or_else(|| format!("new session: no sessionId in {v}"))?
            .to_string();
        Ok(Session { driver: self, id })
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser window; closed when dropped.
pub struct Session<'a> {
    driver: &'a Driver,
    id: String,
}

impl Session<'_> {
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        call(
            &self.driver.addr,
            method,
            &format!("/session/{}{path}", self.id),
            body,
        )
    }

    pub fn goto(&self, url: &str) -> Result<(), String> {
        self.call("POST", "/url", Some(&json!({ "url": url })))
            .map(drop)
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub fn eval(&self, script: &str, args: &[Value]) -> Result<Value, String> {
        self.call(
            "POST",
            "/execute/sync",
            Some(&json!({ "script": script, "args": args })),
        )
    }

    /// Polls `script` until it returns something other than `null` or `false` (within
    /// `timeout`); `what` names the wait in the error.
    pub fn wait_for(&self, what: &str, script: &str, timeout: Duration) -> Result<Value, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.eval(script, &[])?;
            if !(v.is_null() || v == json!(false)) {
                return Ok(v);
            }
            if Instant::now() > deadline {
                let status = self
                    .eval(
                        "const s = document.getElementById('status'); return s ? s.textContent : null",
                        &[],
                    )
                    .unwrap_or(Value::Null);
                return Err(format!(
                    "{what}: not after {:.0} s (status line: {status})",
                    timeout.as_secs_f64()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The first element matching the CSS `selector`.
    fn find(&self, selector: &str) -> Result<String, String> {
        let v = self.call(
            "POST",
            "/element",
            Some(&json!({ "using": "css selector", "value": selector })),
        )?;
        v[ELEMENT_KEY]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("{selector}: no element reference in {v}"))
    }

    /// Clicks the first element matching `selector`, as a pointer would.
    pub fn click(&self, selector: &str) -> Result<(), String> {
        let el = self.find(selector)?;
        self.call("POST", &format!("/element/{el}/click"), Some(&json!({})))
            .map(drop)
            .map_err(|e| format!("click {selector}: {e}"))
    }

    /// Clears the field matching `selector` and types `text` into it.
    pub fn type_into(&self, selector: &str, text: &str) -> Result<(), String> {
        let el = self.find(selector)?;
        self.call("POST", &format!("/element/{el}/clear"), Some(&json!({})))?;
        self.call(
            "POST",
            &format!("/element/{el}/value"),
            Some(&json!({ "text": text })),
        )
        .map(drop)
    }

    /// A PNG of the window, written to `path` (its folder created).
    pub fn screenshot(&self, path: &Path) -> Result<(), String> {
        use base64::Engine as _;
        let v = self.call("GET", "/screenshot", None)?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().ok_or("screenshot: not a string")?)
            .map_err(|e| format!("screenshot: {e}"))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        std::fs::write(path, png).map_err(|e| format!("{}: {e}", path.display()))
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        let _ = call(
            &self.driver.addr,
            "DELETE",
            &format!("/session/{}", self.id),
            None,
        );
    }
}

/// One WebDriver command; its `value`, or the driver's error and message.
fn call(addr: &str, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let bytes = body.map(|b| serde_json::to_vec(b).expect("JSON"));
    let (status, reply) = crate::pos::http(addr, method, path, bytes.as_deref())
        .map_err(|e| format!("{method} {path}: {e}"))?;
    let v: Value = serde_json::from_slice(&reply).map_err(|e| {
        format!(
            "{method} {path}: {status}, not JSON ({e}): {}",
            String::from_utf8_lossy(&reply)
        )
    })?;
    let value = v.get("value").cloned().unwrap_or(Value::Null);
    if status != 200 {
        return Err(format!(
            "{method} {path}: {status} {}: {}",
            value["error"], value["message"]
        ));
    }
    Ok(value)
}
