//! The integration suite, one binary: a real server on port 0 over a fresh
//! PostgreSQL or SQLite database per test (`common`), real peers (an HTTP
//! receiver, an SMPP simulator on the npm package `smpp`, the Python
//! `standardwebhooks` package). Scenarios that touch storage run once per
//! backend, as `<area>::postgres::<name>` and `<area>::sqlite::<name>`.

#[macro_use]
mod common;

mod account;
mod browser;
mod cli;
mod contract;
mod dashboard;
mod edges;
mod faults;
mod http_carrier;
mod numbers;
mod otp;
mod retries;
mod smpp;
mod sms;
mod webhooks;
