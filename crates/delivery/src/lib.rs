//! Queues and delivery.
//!
//! Accepted messages are split per recipient domain into parts that wait in
//! a time-ordered schedule. When a part is due its queue config is fetched
//! (`get_queue_config`), its destination resolved (MX or `mx_list`) into a
//! site, narrowed by the domain's DANE and MTA-STS policies, and it joins that site's ready queue, where up to
//! `connection_limit` workers deliver over reused connections. Each attempt
//! ends delivered, deferred (exponential backoff until `max_age`, then an
//! Expiration and a DSN) or bounced (a DSN to the sender, never for a null
//! sender).

mod admin;
mod automation;
mod bounce;
pub mod custom;
mod dispatch;
mod egress;
mod intern;
pub mod model;
mod outcome;
mod queue_manager;
mod ready;
mod records;
mod route;
mod schedule;
mod shared_holds;
pub mod suspensions;
mod throttle;
pub mod tls_policy;
pub mod tls_reports;

pub use admin::Inspection;
pub use bounce::build_dsn;
pub use ironpost_mta_sts::{StsConfig, StsResolver};
pub use queue_manager::{backoff, DeliveryOptions, QueueManager};
pub use route::{parse_target, Site, Target};
