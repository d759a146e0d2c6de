//! Brute-force throttling of SMTP AUTH: failures are counted per client IP
//! and per user name across all connections; once either passes
//! `auth_failure_limit` inside `auth_failure_window`, further attempts are
//! refused with `421 4.7.0`. The counting lives in `ironpost-listen`,
//! shared with the HTTP admin listener.

pub use ironpost_listen::throttle::{ip_key, user_key, AuthThrottle};
