//! Connections per client address, so one address cannot take every slot
//! (`max_connections_per_ip`). Clients in `relay_hosts` (the operator's own
//! injectors) are not counted.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct PerIp(Mutex<HashMap<IpAddr, usize>>);

/// One counted connection; uncounted when dropped.
pub struct IpSlot {
    table: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    /// A slot for `ip`, or `None` when it already has `limit` connections.
    pub fn take(table: &Arc<PerIp>, ip: IpAddr, limit: usize) -> Option<IpSlot> {
        let ip = ironpost_policy::cidr::canonical(ip);
        let mut t = table.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = t.entry(ip).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            table: table.clone(),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut t = self.table.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = t.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                t.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_address_and_frees_on_drop() {
        let t = Arc::new(PerIp::default());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let one = PerIp::take(&t, a, 2).unwrap();
        let _two = PerIp::take(&t, mapped, 2).expect("same address, second slot");
        assert!(PerIp::take(&t, a, 2).is_none());
        assert!(PerIp::take(&t, "192.0.2.2".parse().unwrap(), 2).is_some());
        drop(one);
        assert!(PerIp::take(&t, a, 2).is_some());
    }
}
