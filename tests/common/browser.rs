//! A real headless Chromium driven over WebDriver (chromedriver), for the
//! page's tests and its render benchmark. Debian's `chromium` and
//! `chromium-driver` (scripts/test installs them); without them the tests
//! fail and say so.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: super::TempDir,
}

impl Browser {
    /// Chromium at `width` x `height`, with the flags a closed network
    /// needs (no background connections, no component updates).
    pub async fn start(width: u32, height: u32) -> Self {
        for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
            assert!(
                std::path::Path::new(tool).exists(),
                "the page tests need {tool}: apt-get install chromium chromium-driver (scripts/test installs them)"
            );
        }
        let port = super::free_port();
        let driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let http = {
            tailprobe::install_crypto();
            reqwest::Client::builder().no_proxy().build().unwrap()
        };
        let ready = async {
            loop {
                if let Ok(r) = http.get(format!("{base}/status")).send().await
                    && r.status().is_success()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(20), ready)
            .await
            .expect("chromedriver answers within 20 s");
        let profile = super::TempDir::new("chromium");
        let args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--hide-scrollbars".into(),
            format!("--user-data-dir={}", profile.0.display()),
            format!("--window-size={width},{height}"),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}
        }}});
        let r = json_of(
            http.post(format!("{base}/session"))
                .header("content-type", "application/json")
                .body(caps.to_string()),
        )
        .await;
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {r}"))
            .to_string();
        Self {
            driver,
            base,
            session,
            http,
            _profile: profile,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut req = self.http.request(method.clone(), url);
        if method != reqwest::Method::GET {
            req = req
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let r = json_of(req).await;
        if let Some(e) = r["value"]["error"].as_str() {
            panic!("WebDriver {path}: {e}: {}", r["value"]["message"]);
        }
        r["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", json!({ "url": url }))
            .await;
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and
    /// returns what it returns.
    pub async fn exec(&self, script: &str, args: Value) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            json!({ "script": script, "args": args }),
        )
        .await
    }

    /// Waits until `script` returns something truthy, for up to `within`.
    pub async fn until(&self, script: &str, within: Duration) -> Value {
        super::poll_async(within, Duration::from_millis(100), || async {
            let v = self.exec(script, json!([])).await;
            let truthy = match &v {
                Value::Null | Value::Bool(false) => false,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            truthy.then_some(v)
        })
        .await
        .unwrap_or_else(|| panic!("not true within {within:?}: {script}"))
    }

    async fn element(&self, css: &str) -> String {
        let v = self
            .call(
                reqwest::Method::POST,
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    pub async fn click(&self, css: &str) {
        let id = self.element(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            json!({}),
        )
        .await;
    }

    /// Types `keys` into the element (WebDriver key codes: "\u{E007}" is
    /// Enter, "\u{E014}" right, "\u{E015}" down).
    pub async fn keys(&self, css: &str, keys: &str) {
        let id = self.element(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            json!({ "text": keys }),
        )
        .await;
    }

    /// A PNG of the viewport, written to `target/page-artifacts/NAME.png`
    /// for a person to look at.
    pub async fn screenshot(&self, name: &str) -> std::path::PathBuf {
        let b64 = self
            .call(reqwest::Method::GET, "/screenshot", Value::Null)
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/page-artifacts");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    pub async fn resize(&self, width: u32, height: u32) {
        self.call(
            reqwest::Method::POST,
            "/window/rect",
            json!({"width": width, "height": height}),
        )
        .await;
    }
}

/// Sends `req` and reads its JSON answer.
async fn json_of(req: reqwest::RequestBuilder) -> Value {
    let body = req.send().await.unwrap().bytes().await.unwrap();
    serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&body)))
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session closes Chromium; then the driver goes.
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = std::thread::scope(|s| {
            s.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let _ = tokio::time::timeout(
                        Duration::from_secs(5),
                        reqwest::Client::builder()
                            .no_proxy()
                            .build()
                            .unwrap()
                            .delete(url)
                            .send(),
                    )
                    .await;
                });
            })
            .join()
        });
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
