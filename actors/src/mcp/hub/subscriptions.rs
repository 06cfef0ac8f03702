//! Resource subscriptions: which sessions follow which resource of which server, and the
//! upstream `resources/subscribe` they share.
//!
//! Part of the hub ([`super::McpHub`]). Sessions subscribe by the URI they see; the table keys
//! subscriptions by (server, the server's URI) and keeps, per session, the URI it used, so a
//! `notifications/resources/updated` reaches exactly the sessions that follow that URI, each
//! in its own terms ([`McpHub::resource_updated`]). The server is sent `resources/subscribe`
//! when the first session subscribes to a URI and `resources/unsubscribe` when the last one
//! leaves, by request or because its session ended; a server that reconnects is sent
//! `resources/subscribe` again for every URI still followed ([`McpHub::resubscribe`]).
//!
//! Bounded: a session follows at most [`MAX_SESSION_SUBSCRIPTIONS`] resources and all sessions
//! together [`MAX_SUBSCRIPTIONS`]; past either, `resources/subscribe` is refused with the reason.
//!
//! Invariant: a session is recorded as following a resource only while the server holds (or
//! is being sent) the subscription. Changes of one resource's followers that send the server a
//! request take turns ([`Subscriptions::turn`]): a session that subscribes while another
//! one's `resources/subscribe` is in flight waits for its outcome, and sends its own if that
//! failed, instead of being recorded on a subscription the server never took. The first
//! follower is recorded before the request goes out, so an update the server sends before it
//! answers still reaches it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use revka_mcp::client::CallOptions;
use revka_mcp::client::McpClient;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use super::routing::{SurfaceError, UriRoute};
use super::{McpHub, ServerEntry};
use crate::session::Session;

/// (server name, the server's URI).
type Key = (String, String);

/// Resources one session may follow at once.
pub const MAX_SESSION_SUBSCRIPTIONS: usize = 256;
/// Resources followed at once for all sessions together.
pub const MAX_SUBSCRIPTIONS: usize = 10_000;

/// A session following a resource.
#[derive(Debug)]
struct Follower {
    session: Weak<Session>,
    /// The URI as the session subscribed to it.
    shown: String,
}

/// The subscription table.
#[derive(Debug, Default)]
pub(super) struct Subscriptions {
    /// Followers by resource, by session id.
    table: Mutex<HashMap<Key, BTreeMap<Arc<str>, Follower>>>,
    /// Sessions whose end is watched (to drop their subscriptions).
    watched: Mutex<HashSet<Arc<str>>>,
    /// The turn of each resource whose followers are being changed ([`Self::turn`]); an
    /// entry lives while someone holds or waits for it.
    turns: Mutex<HashMap<Key, Arc<AsyncMutex<()>>>>,
}

impl Subscriptions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, BTreeMap<Arc<str>, Follower>>> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for the turn to change `key`'s followers: held across the `resources/subscribe`
    /// or `resources/unsubscribe` such a change sends, so that the server is told in the
    /// order the table changed and the table never records followers on a subscription the
    /// server refused (module docs).
    async fn turn(&self, key: &Key) -> Turn<'_> {
        let lock = self
            .turns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.clone())
            .or_default()
            .clone();
        let guard = lock.clone().lock_owned().await;
        Turn {
            subscriptions: self,
            key: key.clone(),
            lock,
            guard: Some(guard),
        }
    }
}

/// A resource's turn ([`Subscriptions::turn`]); dropping it passes the turn on, and forgets the
/// resource's entry when nobody waits for it.
struct Turn<'a> {
    subscriptions: &'a Subscriptions,
    key: Key,
    lock: Arc<AsyncMutex<()>>,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut turns = self
            .subscriptions
            .turns
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // The map's and ours: nobody else holds or waits (a waiter clones under this lock).
        if Arc::strong_count(&self.lock) == 2 {
            turns.remove(&self.key);
        }
    }
}

impl McpHub {
    /// Subscribes `session` to the resource it sees as `shown`: the server is sent
    /// `resources/subscribe` if no session followed it yet (and the subscription is not kept
    /// when that fails). While another session's `resources/subscribe` of the same resource is
    /// in flight, waits for its outcome.
    pub async fn subscribe_resource(
        self: &Arc<Self>,
        session: &Arc<Session>,
        shown: &str,
        route: &UriRoute,
    ) -> Result<(), SurfaceError> {
        let key = (route.server.spec().name.clone(), route.original.clone());
        let id = session.id_arc();
        let _turn = self.subscriptions.turn(&key).await;
        let first = {
            let mut table = self.subscriptions.lock();
            let follows = |t: &HashMap<Key, BTreeMap<Arc<str>, Follower>>| {
                t.values().filter(|f| f.contains_key(&id)).count()
            };
            let new = table.get(&key).is_none_or(|f| !f.contains_key(&id));
            if new && follows(&table) >= MAX_SESSION_SUBSCRIPTIONS {
                return Err(SurfaceError::TooManySubscriptions(format!(
                    "this session already follows {MAX_SESSION_SUBSCRIPTIONS} resources; \
                     unsubscribe from one first"
                )));
            }
            if new && !table.contains_key(&key) && table.len() >= MAX_SUBSCRIPTIONS {
                return Err(SurfaceError::TooManySubscriptions(format!(
                    "Revka already follows {MAX_SUBSCRIPTIONS} resources for its sessions"
                )));
            }
            let followers = table.entry(key.clone()).or_default();
            let first = followers.is_empty();
            followers.insert(
                id.clone(),
                Follower {
                    session: Arc::downgrade(session),
                    shown: shown.to_owned(),
                },
            );
            first
        };
        self.watch_session(session);
        if first {
            let params = json!({ "uri": route.original });
            if let Err(e) = Self::request(&route.server, "resources/subscribe", params).await {
                self.forget(&key, &id);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Unsubscribes `session` from the resource it sees as `shown` (nothing if it did not
    /// follow it); the server is sent `resources/unsubscribe` when no session follows it any
    /// more.
    pub async fn unsubscribe_resource(
        &self,
        session: &Session,
        route: &UriRoute,
    ) -> Result<(), SurfaceError> {
        let key = (route.server.spec().name.clone(), route.original.clone());
        let _turn = self.subscriptions.turn(&key).await;
        if self.forget(&key, session.id()) {
            let params = json!({ "uri": route.original });
            Self::request(&route.server, "resources/unsubscribe", params).await?;
        }
        Ok(())
    }

    /// Drops `session`'s follow of `key`; returns whether it was the last follower (the
    /// server is to be told).
    fn forget(&self, key: &Key, session: &str) -> bool {
        let mut table = self.subscriptions.lock();
        let Some(followers) = table.get_mut(key) else {
            return false;
        };
        if followers.remove(session).is_none() {
            return false;
        }
        if followers.is_empty() {
            table.remove(key);
            return true;
        }
        false
    }

    /// Drops every subscription of a session that ended, once; servers left with no follower
    /// are sent `resources/unsubscribe` (best effort, in the background).
    fn watch_session(self: &Arc<Self>, session: &Arc<Session>) {
        let id = session.id_arc();
        let new = self
            .subscriptions
            .watched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.clone());
        if !new {
            return;
        }
        let hub = Arc::downgrade(self);
        let ended = session.ended().clone();
        tokio::spawn(async move {
            ended.cancelled().await;
            if let Some(hub) = hub.upgrade() {
                hub.session_ended(&id).await;
            }
        });
    }

    /// Drops the subscriptions of an ended session.
    async fn session_ended(&self, id: &str) {
        self.subscriptions
            .watched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
        let followed: Vec<Key> = self
            .subscriptions
            .lock()
            .iter()
            .filter(|(_, followers)| followers.contains_key(id))
            .map(|(key, _)| key.clone())
            .collect();
        for key in followed {
            let _turn = self.subscriptions.turn(&key).await;
            if !self.forget(&key, id) {
                continue;
            }
            let (server, uri) = &key;
            let Some(entry) = self.server(server) else {
                continue;
            };
            // Only a connected server is told: one that reconnects is not re-subscribed.
            if let Some(client) = entry.client() {
                let opts = call_options(&entry);
                if let Err(e) = client
                    .request("resources/unsubscribe", Some(json!({ "uri": uri })), &opts)
                    .await
                {
                    tracing::debug!(%server, %uri, error = %e, "resources/unsubscribe failed");
                }
            }
        }
    }

    /// The URIs of `server` some session follows.
    pub fn subscribed_uris(&self, server: &str) -> Vec<String> {
        let mut uris: Vec<String> = self
            .subscriptions
            .lock()
            .keys()
            .filter(|(s, _)| s == server)
            .map(|(_, uri)| uri.clone())
            .collect();
        uris.sort();
        uris
    }

    /// Sends `resources/subscribe` for every URI of `entry`'s server that sessions follow,
    /// through `client` (a new connection). Failures are logged.
    pub async fn resubscribe(&self, entry: &ServerEntry, client: &McpClient) {
        let server = entry.spec().name.clone();
        let opts = call_options(entry);
        for uri in self.subscribed_uris(&server) {
            let key = (server.clone(), uri);
            let _turn = self.subscriptions.turn(&key).await;
            // The last follower may have left meanwhile (and the server was told).
            if !self.subscriptions.lock().contains_key(&key) {
                continue;
            }
            let uri = key.1.as_str();
            match client
                .request("resources/subscribe", Some(json!({ "uri": uri })), &opts)
                .await
            {
                Ok(_) => tracing::debug!(%server, %uri, "re-subscribed after reconnect"),
                Err(e) => {
                    tracing::warn!(%server, %uri, error = %e, "re-subscribing after reconnect failed")
                }
            }
        }
    }

    /// `notifications/resources/updated` from `server`: delivered to each session that follows
    /// the URI, with the URI as that session subscribed to it. Returns how many sessions were
    /// told. Never blocks.
    pub fn resource_updated(&self, server: &str, params: Option<&RawValue>) -> usize {
        let Some(params) = params.and_then(|p| serde_json::from_str::<Value>(p.get()).ok()) else {
            tracing::debug!(%server, "resources/updated without params ignored");
            return 0;
        };
        let Some(uri) = params.get("uri").and_then(Value::as_str) else {
            tracing::debug!(%server, "resources/updated without a uri ignored");
            return 0;
        };
        let key = (server.to_owned(), uri.to_owned());
        let targets: Vec<(Arc<Session>, String)> = self
            .subscriptions
            .lock()
            .get(&key)
            .map(|followers| {
                followers
                    .values()
                    .filter_map(|f| Some((f.session.upgrade()?, f.shown.clone())))
                    .collect()
            })
            .unwrap_or_default();
        for (session, shown) in &targets {
            let mut params = params.clone();
            params["uri"] = Value::String(shown.clone());
            let message = json!({
                "jsonrpc": "2.0",
                "method": "notifications/resources/updated",
                "params": params,
            });
            session.deliver(message.to_string().into());
        }
        targets.len()
    }
}

/// A request bounded by the server's tool timeout.
fn call_options(entry: &ServerEntry) -> CallOptions {
    CallOptions {
        timeout: entry.spec().tool_timeout.min(super::MAX_CALL),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
