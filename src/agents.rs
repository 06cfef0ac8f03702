//! Agents the daemon runs itself (issue 27). On this branch only [`fallback`]: the agents run
//! as supervised CLI processes under `root/agents` when the session manager cannot take them.
//! (The full module, with the feed and the sidecar stream follower, comes with the lead's merge.)

pub mod fallback;
