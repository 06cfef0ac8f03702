//! The daemon's gateway as a test reaches it: its URL and the owner token, read from the home
//! the daemon writes them to (`gateway.json`, `gateway.token`), and the introspection of a
//! server's actors (`/api/actors/root/mcp_servers/mcp:<name>`).

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

/// The gateway of a running daemon, with the owner token.
#[derive(Clone)]
pub struct Gateway {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// The owner token.
    pub token: String,
    http: reqwest::Client,
}

impl Gateway {
    /// The gateway of the daemon whose home is `home` (its files must be written: wait for
    /// `gateway.json` first).
    pub fn of(home: &Path) -> Self {
        let doc: Value =
            serde_json::from_slice(&std::fs::read(home.join("gateway.json")).unwrap()).unwrap();
        let token = std::fs::read_to_string(home.join("gateway.token")).unwrap();
        Self {
            url: doc["url"].as_str().unwrap().to_owned(),
            token: token.trim().to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
        }
    }

    /// The gateway of a daemon just started in `home`, once it has written `gateway.json`.
    pub async fn of_started(home: &Path) -> Self {
        let file = home.join("gateway.json");
        super::eventually_async("gateway.json written", async || file.exists()).await;
        Self::of(home)
    }

    /// `GET path` with the owner token: (status, JSON body, `null` if it is not JSON).
    pub async fn api(&self, path: &str) -> (StatusCode, Value) {
        self.api_as(&self.token, path).await
    }

    /// A fresh gateway token of `role` (`viewer`, `operator`, `owner`), paired through a code
    /// the owner token mints, as `revka pair --role` does.
    pub async fn paired(&self, role: &str) -> String {
        let code: Value = self
            .http
            .post(format!("{}/api/pair/code", self.url))
            .bearer_auth(&self.token)
            .json(&serde_json::json!({ "role": role }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token: Value = self
            .http
            .post(format!("{}/pair", self.url))
            .header("X-Pairing-Code", code["code"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(token["role"], role, "{token}");
        token["token"].as_str().unwrap().to_owned()
    }

    /// `GET path` with `token`: (status, JSON body, `null` if it is not JSON).
    pub async fn api_as(&self, token: &str, path: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(token)
            .send()
            .await
            .expect("the gateway answers");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The introspection node of server `name` (200 asserted).
    pub async fn server_node(&self, name: &str) -> Value {
        let (status, node) = self
            .api(&format!("/api/actors/root/mcp_servers/mcp:{name}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{node}");
        node
    }

    /// The pid of server `name`'s process; `None` if it has none now, or the gateway did not
    /// answer (callers that need one say so).
    pub async fn server_pid(&self, name: &str) -> Option<i32> {
        let response = self
            .http
            .get(format!(
                "{}/api/actors/root/mcp_servers/mcp:{name}/process",
                self.url
            ))
            .bearer_auth(&self.token)
            .send()
            .await
            .ok()?;
        if response.status() != StatusCode::OK {
            return None;
        }
        let node: Value = response.json().await.ok()?;
        node["details"]["pid"].as_i64().map(|p| p as i32)
    }
}
