//! The person at the terminal as the client side of `revka mcp call`: what the servers ask of
//! their client and no call's relay takes goes here ([`McpHub::set_peer`], set before the
//! servers start).
//!
//! Part of `revka mcp` ([`super`]). `elicitation/create` is answered as `--elicitation` says
//! ([`super::elicit`]: asked on the terminal by default, declined without one); asking runs on
//! a blocking thread, one request at a time, so two requests never interleave their questions.
//! `roots/list` is answered with the server's configured roots. `sampling/createMessage` is
//! refused: the command has no model to ask. `notifications/message` (a server's log) is
//! printed on stderr; other notifications are ignored.
//!
//! [`McpHub::set_peer`]: revka_actors::mcp::hub::McpHub::set_peer

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex, PoisonError};

use futures::FutureExt;
use revka_mcp::client::{Peer, PeerAnswer};
use revka_mcp::jsonrpc::ErrorObject;
use revka_mcp::protocol::{Offers, Root, to_raw};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::elicit::{self, ElicitMode};

/// The terminal's peer; see the [module documentation](self).
pub(super) struct TerminalPeer {
    mode: ElicitMode,
    /// Each server's roots, by name.
    roots: HashMap<String, Vec<Root>>,
    /// Held while a person is asked: one request's questions at a time.
    asking: Arc<Mutex<()>>,
}

impl TerminalPeer {
    /// A peer answering elicitations as `mode` says and `roots/list` from `roots`.
    pub(super) fn new(mode: ElicitMode, roots: HashMap<String, Vec<Root>>) -> Self {
        Self {
            mode,
            roots,
            asking: Arc::default(),
        }
    }
}

impl Peer for TerminalPeer {
    fn request(&self, server: &str, method: &str, params: Option<Box<RawValue>>) -> PeerAnswer {
        match method {
            "elicitation/create" => {
                let mode = self.mode;
                let asking = self.asking.clone();
                let server = server.to_owned();
                let params = params.map_or_else(|| "{}".to_owned(), |p| p.get().to_owned());
                async move {
                    let answered = tokio::task::spawn_blocking(move || {
                        let _one = asking.lock().unwrap_or_else(PoisonError::into_inner);
                        let stdin = std::io::stdin();
                        let tty = stdin.is_terminal();
                        let mut stderr = std::io::stderr();
                        if mode == ElicitMode::Ask && tty {
                            eprintln!("\nserver `{server}` asks for input:");
                        }
                        elicit::answer(mode, &params, tty, &mut stdin.lock(), &mut stderr)
                    })
                    .await;
                    answered.map(|v| to_raw(&v)).map_err(|e| {
                        ErrorObject::new(ErrorObject::INTERNAL_ERROR, format!("asking failed: {e}"))
                    })
                }
                .boxed()
            }
            "roots/list" => {
                let roots = self.roots.get(server).cloned().unwrap_or_default();
                futures::future::ready(Ok(to_raw(&json!({ "roots": roots })))).boxed()
            }
            "sampling/createMessage" => futures::future::ready(Err(ErrorObject::new(
                ErrorObject::METHOD_NOT_FOUND,
                "revka mcp call has no model to sample: sampling/createMessage is not available",
            )))
            .boxed(),
            other => futures::future::ready(Err(ErrorObject::method_not_found(other))).boxed(),
        }
    }

    /// Elicitation is asked of the person at the terminal; there is no model to sample with.
    fn offers(&self) -> Offers {
        Offers {
            elicitation: true,
            ..Offers::NONE
        }
    }

    fn notification(&self, server: &str, method: &str, params: Option<&RawValue>) {
        if method != "notifications/message" {
            return;
        }
        let params: Value = params
            .and_then(|p| serde_json::from_str(p.get()).ok())
            .unwrap_or_default();
        let level = params["level"].as_str().unwrap_or("info");
        let logger = params["logger"]
            .as_str()
            .map(|l| format!(" {l}"))
            .unwrap_or_default();
        let data = match &params["data"] {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        eprintln!("{server}{logger} [{level}] {data}");
    }
}
