//! The flows put together: one [`Authorizer`] per server connection, handed to its HTTP
//! transport. Part of [`crate::oauth`].
//!
//! - [`Authorizer::bearer`] gives the `Authorization` header for the next request: the stored
//!   access token, refreshed first when it is within its margin of expiry (a minute, or half
//!   its lifetime if shorter), or a new client-credentials token.
//! - [`Authorizer::challenged`] handles a `401` (refresh, client credentials, or, with a person
//!   there, a new authorization) and a `403 insufficient_scope` (a step-up asking for the union
//!   of the granted and the required scopes). The transport retries the request after it, at
//!   most [`MAX_AUTHORIZATIONS`](super::MAX_AUTHORIZATIONS) times per request.
//! - [`Authorizer::login`] is `revka mcp login`: a new authorization whatever is stored.
//! - [`Authorizer::run_refresher`] keeps the token fresh while a connection is idle.
//!
//! Everything that changes tokens runs one at a time per server (an async mutex here, the
//! store's file lock across processes). Without a person, a token that cannot be renewed is
//! an [`OAuthError::NeedsLogin`] ending with the spec's login hint; a refused refresh is
//! recorded in the store, so the next connection attempt fails at once instead of looping.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use url::Url;

use super::challenge::{Challenge, split_scopes};
use super::discovery::{self, Discovered, canonical};
use super::endpoint::{self, NONE, PRIVATE_KEY_JWT, TokenAnswer, TokenTarget};
use super::pkce::{self, Pkce};
use super::store::{ClientRecord, Record, Store, TokenRecord, now};
use super::{Grant, OAuthError, OAuthSpec, REFRESH_MARGIN, Secret, callback::Callback};
use crate::redact;

/// What a successful authorization granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorized {
    /// The granted scopes, if the server said.
    pub scope: Option<String>,
    /// Seconds until the access token expires, if the server said.
    pub expires_in: Option<u64>,
    /// Whether a refresh token came with it.
    pub refreshable: bool,
}

/// A server's authorization: see the [`oauth` module](crate::oauth) for the flows.
#[derive(Debug)]
pub struct Authorizer {
    spec: OAuthSpec,
    url: Url,
    /// The URL as records name it.
    key: String,
    http: reqwest::Client,
    store: Store,
    /// Serialises every change of tokens.
    flow: tokio::sync::Mutex<()>,
    /// The header in use and when its token expires: the fast path of [`Self::bearer`].
    current: Mutex<Option<Current>>,
}

#[derive(Debug, Clone)]
struct Current {
    header: HeaderValue,
    refresh_at: Option<u64>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Authorizer {
    /// The authorizer of the MCP server at `url`, configured by `spec`.
    pub fn new(spec: OAuthSpec, url: &str, http: reqwest::Client) -> Result<Arc<Self>, OAuthError> {
        let parsed = Url::parse(url)
            .map_err(|_| OAuthError::Protocol(format!("`{}` is not a URL", redact::url(url))))?;
        Ok(Arc::new(Self {
            key: canonical(&parsed),
            store: Store::new(&spec.store_dir),
            spec,
            url: parsed,
            http,
            flow: tokio::sync::Mutex::new(()),
            current: Mutex::new(None),
        }))
    }

    /// The server's name.
    pub fn server(&self) -> &str {
        &self.spec.server
    }

    /// The spec's login hint.
    pub fn hint(&self) -> &str {
        &self.spec.login_hint
    }

    /// The header of the token in use, without waiting (what [`Self::bearer`] last settled).
    pub fn current_header(&self) -> Option<HeaderValue> {
        lock(&self.current).as_ref().map(|c| c.header.clone())
    }

    /// The `Authorization` header for the next request, if a token is at hand (renewing it
    /// first when it is about to expire). `None`: send none and let the server challenge.
    pub async fn bearer(&self) -> Result<Option<HeaderValue>, OAuthError> {
        if let Some(c) = lock(&self.current).clone()
            && c.refresh_at.is_none_or(|at| now() < at)
        {
            return Ok(Some(c.header));
        }
        let _flow = self.flow.lock().await;
        if let Some(c) = lock(&self.current).clone()
            && c.refresh_at.is_none_or(|at| now() < at)
        {
            return Ok(Some(c.header));
        }
        let Some(record) = self.store.load(&self.spec.server, &self.key)? else {
            return Ok(None);
        };
        if record.refresh_failed.is_some() {
            return Ok(None);
        }
        if !needs_refresh(&record) {
            return self.adopt(&record).map(Some);
        }
        match self.renew(&record).await {
            Ok(Some(fresh)) => self.adopt(&fresh).map(Some),
            // Not renewable without a person: try the old token (the server decides).
            Ok(None) => self.adopt(&record).map(Some),
            Err(e) => Err(e),
        }
    }

    /// Handles an auth failure of a request that carried `sent`: `status` 401, or 403 with an
    /// `insufficient_scope` challenge (`www_authenticate`). `Ok` means: retry the request.
    pub async fn challenged(
        &self,
        status: u16,
        www_authenticate: Option<&str>,
        sent: Option<&HeaderValue>,
    ) -> Result<(), OAuthError> {
        let challenge = www_authenticate.and_then(Challenge::parse);
        let _flow = self.flow.lock().await;
        let current = lock(&self.current).as_ref().map(|c| c.header.clone());
        let step_up = status == 403
            && challenge
                .as_ref()
                .is_some_and(Challenge::insufficient_scope);
        // Another request already renewed the token: just retry with it.
        if !step_up && current.is_some() && current.as_ref() != sent {
            return Ok(());
        }
        *lock(&self.current) = None;
        let stored = self.store.load(&self.spec.server, &self.key)?;
        let can_act =
            self.spec.grant == Grant::ClientCredentials || self.spec.interactive.is_some();
        if !step_up
            && let Some(record) = &stored
            && record.refresh_failed.is_none()
        {
            // The stored token is not the one refused (another process renewed it): use it.
            if header(&record.tokens.access_token).ok().as_ref() != sent && !needs_refresh(record) {
                self.adopt(record)?;
                return Ok(());
            }
            // A token the server no longer takes: renew it without a person, once.
            match self.renew(record).await {
                Ok(Some(fresh)) => {
                    self.adopt(&fresh)?;
                    return Ok(());
                }
                Ok(None) => {}
                Err(OAuthError::NeedsLogin { .. }) if can_act => {}
                Err(e) => return Err(e),
            }
        }
        let mut scopes = challenge
            .as_ref()
            .map(Challenge::scopes)
            .unwrap_or_default();
        if step_up && let Some(granted) = stored.as_ref().and_then(|r| r.tokens.scope.as_deref()) {
            let mut all = split_scopes(Some(granted));
            for s in scopes {
                if !all.contains(&s) {
                    all.push(s);
                }
            }
            scopes = all;
        }
        if !can_act {
            let why = if step_up {
                format!(
                    "the server needs scope `{}`, which the stored token lacks",
                    challenge
                        .as_ref()
                        .and_then(|c| c.scope.clone())
                        .unwrap_or_default()
                )
            } else if stored.is_some() {
                "the stored token was refused (HTTP 401) and cannot be renewed".to_owned()
            } else {
                "the server requires authorization (HTTP 401) and no token is stored".to_owned()
            };
            return Err(self.needs_login(why));
        }
        let record = self.authorize(challenge.as_ref(), scopes).await?;
        self.adopt(&record)?;
        Ok(())
    }

    /// `revka mcp login`: a new authorization, whatever is stored. Asks the server first (an
    /// unauthenticated `initialize`) for its challenge; a server that does not challenge is
    /// still authorized if it publishes protected resource metadata.
    pub async fn login(&self) -> Result<Authorized, OAuthError> {
        let challenge = self.probe().await?;
        let _flow = self.flow.lock().await;
        let scopes = challenge
            .as_ref()
            .map(Challenge::scopes)
            .unwrap_or_default();
        let record = self.authorize(challenge.as_ref(), scopes).await?;
        self.adopt(&record)?;
        Ok(Authorized {
            scope: record.tokens.scope.clone(),
            expires_in: record.tokens.expires_at.map(|at| at.saturating_sub(now())),
            refreshable: record.tokens.refresh_token.is_some(),
        })
    }

    /// Renews the token before it expires while the connection is idle, so it keeps working
    /// through idle hours. Returns only when the token is dead and a person must act (the
    /// error says why, with the login hint): the caller ends the connection with it.
    pub async fn run_refresher(self: Arc<Self>) -> OAuthError {
        loop {
            let due = lock(&self.current).as_ref().and_then(|c| c.refresh_at);
            let wait = due.map_or(Duration::from_secs(3600), |at| {
                Duration::from_secs(at.saturating_sub(now()).max(1))
            });
            tokio::time::sleep(wait).await;
            let Some(due) = due else { continue };
            match self.bearer().await {
                Err(e @ OAuthError::NeedsLogin { .. }) => return e,
                Err(e) => {
                    tracing::warn!(server = %self.spec.server, error = %e, "renewing the OAuth token failed; trying again in 30 s");
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
                Ok(_) => {
                    let next = lock(&self.current).as_ref().and_then(|c| c.refresh_at);
                    if next.is_some_and(|at| at <= due) {
                        // Not renewable without a person (no refresh token): the server will
                        // say so with a 401 on the next request; nothing to do until then.
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                }
            }
        }
    }

    fn needs_login(&self, reason: String) -> OAuthError {
        OAuthError::NeedsLogin {
            reason,
            hint: self.spec.login_hint.clone(),
        }
    }

    /// Makes `record`'s token the current one.
    fn adopt(&self, record: &Record) -> Result<HeaderValue, OAuthError> {
        let header = header(&record.tokens.access_token)?;
        *lock(&self.current) = Some(Current {
            header: header.clone(),
            refresh_at: refresh_at(record),
        });
        Ok(header)
    }

    /// A fresh token without a person: a refresh, or new client credentials. `None`: not
    /// possible (no refresh token). A refused refresh is recorded and is `NeedsLogin`.
    async fn renew(&self, record: &Record) -> Result<Option<Record>, OAuthError> {
        let _file = self.store.lock(&self.spec.server).await?;
        // Another process may have renewed it meanwhile: use that.
        if let Some(latest) = self.store.load(&self.spec.server, &self.key)?
            && latest.tokens != record.tokens
            && latest.refresh_failed.is_none()
            && !needs_refresh(&latest)
        {
            return Ok(Some(latest));
        }
        if record.grant == Grant::ClientCredentials.as_str() {
            let answer = self
                .client_credentials(&record.target, &record.client, &[])
                .await?;
            let fresh = self.record(record.target.clone(), record.client.clone(), answer, None);
            self.store.save(&fresh)?;
            return Ok(Some(fresh));
        }
        let Some(refresh) = &record.tokens.refresh_token else {
            return Ok(None);
        };
        let form = vec![
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", refresh.expose().to_owned()),
            ("resource", record.target.resource.clone()),
        ];
        match endpoint::token(
            &self.http,
            &record.target,
            &record.client,
            &self.spec,
            form,
            "refresh_token",
        )
        .await
        {
            Ok(answer) => {
                let fresh = self.record(
                    record.target.clone(),
                    record.client.clone(),
                    answer,
                    Some(record),
                );
                self.store.save(&fresh)?;
                tracing::info!(server = %self.spec.server, "OAuth token refreshed");
                Ok(Some(fresh))
            }
            Err(e @ OAuthError::Refused { .. }) => {
                let mut dead = record.clone();
                dead.refresh_failed = Some(e.to_string());
                self.store.save(&dead)?;
                Err(self.needs_login(format!("the refresh token was refused: {e}")))
            }
            Err(e) => Err(e),
        }
    }

    /// A new record from a token answer; `previous` supplies what a refresh answer may omit
    /// (the refresh token when not rotated, the scope).
    fn record(
        &self,
        target: TokenTarget,
        client: ClientRecord,
        answer: TokenAnswer,
        previous: Option<&Record>,
    ) -> Record {
        let obtained_at = now();
        let tokens = TokenRecord {
            access_token: answer.access_token,
            refresh_token: answer
                .refresh_token
                .or_else(|| previous.and_then(|p| p.tokens.refresh_token.clone())),
            expires_at: answer.expires_in.map(|s| obtained_at.saturating_add(s)),
            scope: answer
                .scope
                .or_else(|| previous.and_then(|p| p.tokens.scope.clone())),
            obtained_at,
        };
        Record::new(
            &self.spec.server,
            &self.key,
            self.spec.grant.as_str(),
            target,
            client,
            tokens,
        )
    }

    /// Discovery, client identity and a grant: a new record, stored.
    async fn authorize(
        &self,
        challenge: Option<&Challenge>,
        mut scopes: Vec<String>,
    ) -> Result<Record, OAuthError> {
        let found = discovery::discover(&self.http, &self.url, challenge).await?;
        if !self.spec.scopes.is_empty() {
            scopes = self.spec.scopes.clone();
        } else if scopes.is_empty() {
            scopes = found.scopes_supported.clone();
        }
        let target = TokenTarget {
            issuer: found.server.issuer.clone(),
            token_endpoint: found.server.token_endpoint.to_string(),
            resource: found.resource.clone(),
        };
        let record = match self.spec.grant {
            Grant::ClientCredentials => {
                let client = self.preregistered(&found, true)?.ok_or_else(|| {
                    OAuthError::Protocol(
                        "client credentials need [mcp.servers.oauth] client_id (with client_secret or private_key_file)".into(),
                    )
                })?;
                let answer = self.client_credentials(&target, &client, &scopes).await?;
                self.record(target, client, answer, None)
            }
            Grant::AuthorizationCode => self.authorization_code(&found, target, &scopes).await?,
        };
        let _file = self.store.lock(&self.spec.server).await?;
        self.store.save(&record)?;
        tracing::info!(server = %self.spec.server, grant = self.spec.grant.as_str(), "OAuth authorization stored");
        Ok(record)
    }

    /// The pre-registered client, if configured.
    fn preregistered(
        &self,
        found: &Discovered,
        machine: bool,
    ) -> Result<Option<ClientRecord>, OAuthError> {
        let Some(id) = &self.spec.client_id else {
            return Ok(None);
        };
        let method = if machine && self.spec.private_key_file.is_some() {
            PRIVATE_KEY_JWT
        } else if self.spec.client_secret.is_some() {
            endpoint::secret_method(found.server.auth_methods.as_deref())
        } else {
            NONE
        };
        Ok(Some(ClientRecord {
            client_id: id.clone(),
            client_secret: self.spec.client_secret.clone(),
            auth_method: method.to_owned(),
            registered: false,
        }))
    }

    async fn client_credentials(
        &self,
        target: &TokenTarget,
        client: &ClientRecord,
        scopes: &[String],
    ) -> Result<TokenAnswer, OAuthError> {
        let mut form = vec![
            ("grant_type", "client_credentials".to_owned()),
            ("resource", target.resource.clone()),
        ];
        if !scopes.is_empty() {
            form.push(("scope", scopes.join(" ")));
        }
        endpoint::token(
            &self.http,
            target,
            client,
            &self.spec,
            form,
            "client_credentials",
        )
        .await
    }

    async fn authorization_code(
        &self,
        found: &Discovered,
        target: TokenTarget,
        scopes: &[String],
    ) -> Result<Record, OAuthError> {
        let Some(agent) = &self.spec.interactive else {
            return Err(self.needs_login("authorizing needs a person at a browser".into()));
        };
        let meta = &found.server;
        if !meta.s256 {
            return Err(OAuthError::Protocol(format!(
                "the authorization server {} does not support PKCE with S256 (code_challenge_methods_supported); refusing to authorize without it",
                redact::url(&meta.issuer)
            )));
        }
        let Some(authorize) = &meta.authorization_endpoint else {
            return Err(OAuthError::Protocol(format!(
                "the authorization server {} names no authorization_endpoint",
                redact::url(&meta.issuer)
            )));
        };
        let callback = Callback::bind(self.spec.redirect_port).await?;
        let redirect = callback.redirect_uri();
        let client = match self.preregistered(found, false)? {
            Some(c) => c,
            None => match (&self.spec.client_metadata_url, &meta.registration_endpoint) {
                (Some(cimd), _) if meta.client_id_metadata_documents => ClientRecord {
                    client_id: cimd.clone(),
                    client_secret: None,
                    auth_method: NONE.to_owned(),
                    registered: false,
                },
                (_, Some(register)) => {
                    endpoint::register(
                        &self.http,
                        register,
                        &self.spec,
                        meta.auth_methods.as_deref(),
                        Some(&redirect),
                    )
                    .await?
                }
                _ => {
                    return Err(OAuthError::Protocol(format!(
                        "the authorization server {} offers no dynamic client registration{}; configure [mcp.servers.oauth] client_id for `{}`",
                        redact::url(&meta.issuer),
                        if meta.client_id_metadata_documents {
                            " and no client_metadata_url is configured"
                        } else {
                            " nor client ID metadata documents"
                        },
                        self.spec.server
                    )));
                }
            },
        };
        let pkce = Pkce::new()?;
        let state = pkce::random(32)?;
        let mut url = authorize.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &client.client_id)
                .append_pair("redirect_uri", &redirect)
                .append_pair("code_challenge", &pkce.challenge)
                .append_pair("code_challenge_method", "S256")
                .append_pair("state", &state)
                .append_pair("resource", &target.resource);
            if !scopes.is_empty() {
                q.append_pair("scope", &scopes.join(" "));
            }
        }
        agent
            .0
            .open(url.as_str())
            .map_err(|e| OAuthError::Authorization(format!("cannot open the browser: {e}")))?;
        let code = callback.wait(&state, self.spec.login_timeout).await?;
        let form = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code),
            ("redirect_uri", redirect),
            ("code_verifier", pkce.verifier),
            ("resource", target.resource.clone()),
        ];
        let answer = endpoint::token(
            &self.http,
            &target,
            &client,
            &self.spec,
            form,
            "authorization_code",
        )
        .await?;
        Ok(self.record(target, client, answer, None))
    }

    /// An unauthenticated `initialize` to the server: its `Bearer` challenge, or `None` when
    /// it did not challenge (then discovery uses the well-known locations).
    async fn probe(&self) -> Result<Option<Challenge>, OAuthError> {
        let body = serde_json::json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {
                "protocolVersion": crate::protocol::LATEST_PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "revka", "version": env!("CARGO_PKG_VERSION")}
            }
        });
        let shown = redact::url(self.url.as_str());
        let resp = self
            .http
            .post(self.url.clone())
            .header(ACCEPT, "application/json, text/event-stream")
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .timeout(super::request_timeout())
            .send()
            .await
            .map_err(|e| discovery::request_error("the MCP server", &shown, &e))?;
        let status = resp.status().as_u16();
        let challenge = resp
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(Challenge::parse);
        if let Some(session) = resp.headers().get("mcp-session-id").cloned() {
            // Initialized without authorization: end that session.
            let _ = self
                .http
                .delete(self.url.clone())
                .header("mcp-session-id", session)
                .timeout(Duration::from_secs(2))
                .send()
                .await;
        }
        match status {
            401 | 403 => Ok(challenge.or(Some(Challenge::default()))),
            _ => Ok(None),
        }
    }
}

/// An access token as an `Authorization` header value (sensitive: never logged by HTTP/2).
fn header(token: &Secret) -> Result<HeaderValue, OAuthError> {
    let mut v = HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
        OAuthError::Protocol("the access token contains characters a header cannot carry".into())
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// When a record's token should be renewed: a minute before expiry, or at half its lifetime
/// if that is shorter. `None`: no expiry known.
fn refresh_at(record: &Record) -> Option<u64> {
    let at = record.tokens.expires_at?;
    let lifetime = at.saturating_sub(record.tokens.obtained_at);
    let margin = REFRESH_MARGIN.as_secs().min(lifetime / 2);
    Some(at.saturating_sub(margin))
}

fn needs_refresh(record: &Record) -> bool {
    refresh_at(record).is_some_and(|at| now() >= at)
}
