//! The gateway: Revka's browser-, script- and operator-facing HTTP surface.
//!
//! The gateway listener runs under `root/gateway` in the supervision tree and serves the
//! dashboard, the `/api/*` routes and the WebSockets on one origin. Every route will require a
//! bearer token, except the pairing endpoint that trades a one-time code for one.
//!
//! For now only authentication lives here ([`auth`]: token store, owner token, pairing codes,
//! failed-attempt limiter, bearer extraction); the routes come later.

pub mod auth;
