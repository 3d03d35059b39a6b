//! Loopback ports for the components: random, each picked once, free when picked.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::credentials::random_bytes;
use crate::Error;

/// Random free loopback ports, each picked once, below Linux's ephemeral range (32768+) so
/// outgoing connections rarely take one first.
#[derive(Default)]
pub(crate) struct PortPicker {
    picked: Vec<u16>,
}

impl PortPicker {
    pub(crate) fn pick(&mut self) -> Result<u16, Error> {
        for _ in 0..200 {
            let port = 10_000 + (u16::from_le_bytes(random_bytes()?) % 22_000);
            if self.picked.contains(&port) || port_in_use(port) {
                continue;
            }
            self.picked.push(port);
            return Ok(port);
        }
        Err(Error::Io {
            what: "pick a port".to_owned(),
            source: io::Error::other("could not find a free port"),
        })
    }
}

fn port_in_use(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picked_ports_are_distinct_and_below_the_ephemeral_range() {
        let mut picker = PortPicker::default();
        let ports: Vec<u16> = (0..20).map(|_| picker.pick().expect("port")).collect();
        assert!(ports.iter().all(|p| (10_000..32_000).contains(p)));
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len());
    }
}
