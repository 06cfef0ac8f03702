//! Tests of the OAuth flows against mock servers (axum on loopback).
