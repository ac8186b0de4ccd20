//! IP fragment reassembly (IPv4 fragments, and IPv6 fragment extension headers), bounded.

use std::collections::HashMap;
use std::net::IpAddr;

/// Largest datagram payload (IPv4's total length and IPv6's payload length are 16 bits).
pub const DATAGRAM_BYTES_MAX: usize = 65_535;
/// Most datagrams waiting for fragments at once; the oldest is dropped past this, with a warning.
pub const FRAGMENTED_DATAGRAMS_MAX: usize = 4096;
/// Most fragments of one datagram.
pub const FRAGMENTS_PER_DATAGRAM_MAX: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    src: IpAddr,
    dst: IpAddr,
    id: u32,
    protocol: u8,
}

#[derive(Debug, Default)]
struct Pending {
    pieces: Vec<(usize, Vec<u8>)>,
    /// Payload length, known once the last fragment (more = false) arrived.
    total: Option<usize>,
    /// When this datagram's first fragment arrived, to drop the oldest first.
    order: u64,
}

/// Holds fragments until their datagram is whole.
#[derive(Debug, Default)]
pub struct Defragmenter {
    pending: HashMap<Key, Pending>,
    counter: u64,
    /// Datagrams dropped because a limit was crossed or a fragment was invalid.
    pub dropped: u64,
}

impl Defragmenter {
    /// Adds one fragment; returns the whole payload when this fragment completed it.
    pub fn add(
        &mut self,
        src: IpAddr,
        dst: IpAddr,
        protocol: u8,
        fragment: crate::network::packet::Fragment,
        payload: &[u8],
    ) -> Option<Vec<u8>> {
        let key = Key {
            src,
            dst,
            id: fragment.id,
            protocol,
        };
        let end = fragment.offset.checked_add(payload.len())?;
        if end > DATAGRAM_BYTES_MAX {
            self.dropped += 1;
            self.pending.remove(&key);
            return None;
        }
        if !self.pending.contains_key(&key) && self.pending.len() >= FRAGMENTED_DATAGRAMS_MAX {
            let oldest = self
                .pending
                .iter()
                .min_by_key(|(_, p)| p.order)
                .map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                self.pending.remove(&oldest);
                self.dropped += 1;
            }
        }
        self.counter += 1;
        let order = self.counter;
        let entry = self.pending.entry(key).or_insert_with(|| Pending {
            order,
            ..Pending::default()
        });
        if entry.pieces.len() >= FRAGMENTS_PER_DATAGRAM_MAX {
            self.pending.remove(&key);
            self.dropped += 1;
            return None;
        }
        entry.pieces.push((fragment.offset, payload.to_vec()));
        if !fragment.more {
            entry.total = Some(end);
        }
        let total = entry.total?;
        entry.pieces.sort_by_key(|(offset, _)| *offset);
        let mut covered = 0;
        for (offset, data) in &entry.pieces {
            if *offset > covered {
                return None;
            }
            covered = covered.max(offset + data.len());
        }
        if covered < total {
            return None;
        }
        let entry = self.pending.remove(&key)?;
        let mut whole = vec![0_u8; total];
        // Earlier fragments win on overlap: write in reverse so the first one lands last.
        for (offset, data) in entry.pieces.iter().rev() {
            let stop = (offset + data.len()).min(total);
            if *offset < stop {
                whole[*offset..stop].copy_from_slice(&data[..stop - offset]);
            }
        }
        Some(whole)
    }

    /// Datagrams still waiting for fragments.
    pub fn incomplete(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::packet::Fragment;

    fn frag(offset: usize, more: bool) -> Fragment {
        Fragment {
            id: 7,
            offset,
            more,
        }
    }

    #[test]
    fn fragments_in_any_order_make_the_datagram() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let mut d = Defragmenter::default();
        assert_eq!(d.add(a, b, 17, frag(16, false), b"tail"), None);
        assert_eq!(d.add(a, b, 17, frag(8, true), b"middle!!"), None);
        let whole = d.add(a, b, 17, frag(0, true), b"first---").unwrap();
        assert_eq!(whole, b"first---middle!!tail");
        assert_eq!(d.incomplete(), 0);
    }

    #[test]
    fn datagram_bytes_max_is_enforced() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let mut d = Defragmenter::default();
        assert_eq!(d.add(a, a, 17, frag(DATAGRAM_BYTES_MAX, false), b"x"), None);
        assert_eq!(d.dropped, 1);
    }

    #[test]
    fn fragments_per_datagram_max_drops_the_datagram() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let mut d = Defragmenter::default();
        // One byte apart: every fragment overlaps the next, none completes the datagram.
        for i in 0..FRAGMENTS_PER_DATAGRAM_MAX {
            assert_eq!(d.add(a, a, 17, frag(i * 8, true), b"12345678"), None);
        }
        assert_eq!(d.dropped, 0);
        let last = FRAGMENTS_PER_DATAGRAM_MAX * 8;
        assert_eq!(d.add(a, a, 17, frag(last, false), b"end"), None);
        assert_eq!(d.dropped, 1);
        assert_eq!(d.incomplete(), 0, "the datagram is given up, not kept");
    }

    #[test]
    fn fragmented_datagrams_max_drops_the_oldest() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let mut d = Defragmenter::default();
        for id in 0..=FRAGMENTED_DATAGRAMS_MAX as u32 {
            let f = Fragment {
                id,
                offset: 0,
                more: true,
            };
            d.add(a, a, 17, f, b"12345678");
        }
        assert_eq!(d.incomplete(), FRAGMENTED_DATAGRAMS_MAX);
        assert_eq!(d.dropped, 1);
    }
}
