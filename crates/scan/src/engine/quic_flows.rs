//! QUIC in the scan: datagrams go to their connection as they come; at the end of the capture
//! each connection's ClientHello and streams are searched (HTTP/3 requests and responses with
//! QPACK decoded, other streams as they are) and the connection is listed beside TLS flows.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::{FlowKey, Place, Session, TLS_FLOWS_MAX, Timing, flow_key};
use crate::finding::decode;
use crate::quic::QuicSummary;
use crate::quic::conn::{self, Buffer, Connection, QUIC_CONNECTIONS_MAX};
use crate::quic::h3;
use crate::quic::qpack::DynamicTable;
use crate::tls::decrypt::Visibility;

/// The QUIC connections of one capture.
#[derive(Debug, Default)]
pub(super) struct QuicFlows {
    connections: HashMap<FlowKey, Connection, rustc_hash::FxBuildHasher>,
    dropped: u64,
}

impl Session<'_> {
    /// Takes a UDP datagram if it belongs to a QUIC connection (a known one, or one it starts
    /// with a client Initial); `false` leaves it to the plain UDP search.
    pub(super) fn quic_datagram(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
        time_us: i64,
        dns_host: &Option<String>,
    ) -> bool {
        let key = flow_key(src, dst);
        if !self.quic.connections.contains_key(&key) {
            let Some((version, dcid)) = conn::starts_connection(payload) else {
                return false;
            };
            if self.quic.connections.len() >= QUIC_CONNECTIONS_MAX {
                self.quic.dropped += 1;
                return false;
            }
            // Ordered by the frame that began it (the global frame number in a shard), so that
            // connections are listed alike whatever the thread count.
            let mut connection = Connection::new(src, dst, version, &dcid, time_us, self.frame);
            connection.dns_host = dns_host.clone();
            self.quic.connections.insert(key, connection);
        }
        let (keys, capture_keys) = (self.keys, &self.capture_keys);
        let lookup = |random: &[u8; 32]| {
            capture_keys
                .get(random)
                .or_else(|| keys.and_then(|k| k.get(random)))
                .cloned()
        };
        // Invariant: inserted above when missing.
        let Some(connection) = self.quic.connections.get_mut(&key) else {
            return false;
        };
        let from_client = src == connection.client;
        connection.datagram(from_client, payload, self.frame, time_us, &lookup);
        true
    }

    /// Searches and lists every QUIC connection of the capture, calling `after` with the tally
    /// and the connection's order after each (a shard stamps what each one added).
    pub(crate) fn finish_quic(&mut self, after: &mut dyn FnMut(&super::Tally, u64)) {
        let mut connections: Vec<Connection> = std::mem::take(&mut self.quic.connections)
            .into_values()
            .collect();
        connections.sort_by_key(|c| c.order);
        for connection in &connections {
            self.scan_quic(connection);
            self.list_quic(connection);
            after(self.tally, connection.order);
        }
        if self.quic.dropped > 0 {
            self.warn(format!(
                "{}: more than {QUIC_CONNECTIONS_MAX} quic connections; {} datagrams of later ones were searched as plain udp",
                self.label, self.quic.dropped
            ));
        }
    }

    fn quic_place(
        &self,
        c: &Connection,
        protocol: &'static str,
        outbound: bool,
        host: Option<String>,
    ) -> Place {
        let (src, dst) = if outbound {
            (c.client, c.server)
        } else {
            (c.server, c.client)
        };
        Place {
            protocol,
            src: src.ip(),
            dst,
            remote: c.server,
            host: host
                .or_else(|| c.hello.as_ref().and_then(|h| h.server_name.clone()))
                .or_else(|| c.dns_host.clone()),
            cleartext: false,
            outbound,
            stream: None,
        }
    }

    fn scan_quic(&mut self, c: &Connection) {
        for warning in &c.warnings {
            self.warn(format!(
                "{}: quic {} → {}: {warning}",
                self.label, c.client, c.server
            ));
        }
        // The ClientHello: readable by anyone on the path (Initial keys are public), so an
        // identifier in the SNI is found even without a key log.
        let place = self.quic_place(c, "quic", true, None);
        self.search(
            &c.crypto[0].data,
            &["quic", "tls"],
            0,
            &place,
            Timing::Marks(&c.crypto[0].marks),
        );
        if c.streams.is_empty() {
            return;
        }
        let h3 = c
            .hello
            .as_ref()
            .is_none_or(|h| h.alpn.is_empty() || h.alpn.iter().any(|a| a.starts_with("h3")));
        if !h3 {
            for (id, buffers) in &c.streams {
                for (side, buffer) in buffers.iter().enumerate() {
                    let place = self.quic_place(c, "quic", side == 0, None);
                    let _ = id;
                    self.search(
                        &buffer.data,
                        &["quic", "stream"],
                        0,
                        &place,
                        Timing::Marks(&buffer.marks),
                    );
                }
            }
            return;
        }
        // Unidirectional streams first: the encoder streams build the tables the requests'
        // and responses' HEADERS refer to, the control streams say the tables' capacity.
        let mut tables = [DynamicTable::default(), DynamicTable::default()];
        let mut capacities = [0u64; 2];
        for (&id, buffers) in c.streams.iter().filter(|(id, _)| *id & 2 != 0) {
            let side = (id & 1) as usize;
            let data = &buffers[side].data;
            let Some((kind, at)) = h3::uni_stream_type(data) else {
                continue;
            };
            match kind {
                h3::STREAM_CONTROL => {
                    capacities[side] = h3::qpack_max_table_capacity(data, at).unwrap_or(0);
                }
                h3::STREAM_QPACK_ENCODER => {
                    if let Err(e) = tables[side].encoder_stream(&data[at..]) {
                        self.warn(format!(
                            "{}: quic {} → {}: qpack encoder stream {id}: {e}",
                            self.label, c.client, c.server
                        ));
                    }
                }
                h3::STREAM_QPACK_DECODER | h3::STREAM_PUSH => {}
                _ => {}
            }
        }
        // A side's SETTINGS bound the table the other side encodes with.
        tables[0].max_capacity = capacities[1];
        tables[1].max_capacity = capacities[0];
        for (&id, buffers) in c.streams.iter().filter(|(id, _)| *id & 2 == 0) {
            for (side, buffer) in buffers.iter().enumerate() {
                if buffer.data.is_empty() {
                    continue;
                }
                self.h3_message(c, id, side == 0, buffer, &tables[side]);
            }
        }
    }

    fn h3_message(
        &mut self,
        c: &Connection,
        id: u64,
        outbound: bool,
        buffer: &Buffer,
        table: &DynamicTable,
    ) {
        let message = h3::message(&buffer.data, table);
        let (src, dst) = if outbound {
            (c.client, c.server)
        } else {
            (c.server, c.client)
        };
        for problem in &message.problems {
            self.warn(format!(
                "{}: http/3 stream {id} from {src} to {dst}: {problem}",
                self.label
            ));
        }
        let timing = Timing::Marks(&buffer.marks);
        let mut place = self.quic_place(c, "http3", outbound, message.field(":authority"));
        // HTTP/3 stream ids are QUIC stream ids (62 bits); the report names streams as u32.
        place.stream = u32::try_from(id).ok();
        // `:path` is searched once, as the URI below, as HTTP/2 and HTTP/1.1 do (their
        // request line is not part of the header lines either).
        let mut head = Vec::new();
        for (name, value) in message.fields.iter().filter(|(n, _)| n != b":path") {
            head.extend_from_slice(name);
            head.extend_from_slice(b": ");
            head.extend_from_slice(value);
            head.extend_from_slice(b"\r\n");
        }
        if let Some(path) = message.fields.iter().find(|(n, _)| n == b":path") {
            match decode::url_decode(&path.1, true) {
                Some(d) => self.search(
                    &d,
                    &["quic", "h3", "http-uri", "url"],
                    message.headers_offset,
                    &place,
                    timing,
                ),
                None => self.search(
                    &path.1,
                    &["quic", "h3", "http-uri"],
                    message.headers_offset,
                    &place,
                    timing,
                ),
            }
        }
        self.search(
            &head,
            &["quic", "h3", "http-header"],
            message.headers_offset,
            &place,
            timing,
        );
        if message.body.is_empty() {
            return;
        }
        let codings: Vec<String> = message
            .field("content-encoding")
            .map(|v| {
                v.split(',')
                    .map(|c| c.trim().to_ascii_lowercase())
                    .filter(|c| !c.is_empty() && c != "identity")
                    .collect()
            })
            .unwrap_or_default();
        let content_type = message
            .field("content-type")
            .map(|t| t.to_ascii_lowercase());
        let parts = super::BodyParts {
            data: &message.body,
            content_encoding: &codings,
            content_type: content_type.as_deref().unwrap_or(""),
            grpc_encoding: None,
        };
        self.http_body(
            &parts,
            vec!["quic", "h3", "http-body"],
            message.body_offset,
            &place,
            timing,
            (src, dst),
        );
    }

    fn list_quic(&mut self, c: &Connection) {
        if self.tally.tls_flows.len() + self.tally.quic_flows.len() >= TLS_FLOWS_MAX {
            self.tally.tls_flows_dropped += 1;
            return;
        }
        let sni = c.hello.as_ref().and_then(|h| h.server_name.clone());
        let visibility = match c.hidden_because() {
            None => Visibility::Decrypted,
            Some(reason) => Visibility::Hidden(reason),
        };
        self.tally.quic_flows.push(QuicSummary {
            client: c.client,
            server: c.server,
            host: sni.clone().or_else(|| c.dns_host.clone()),
            sni,
            version: c.version.name,
            cipher_suite: c.cipher_suite,
            alpn: c.hello.as_ref().map(|h| h.alpn.clone()).unwrap_or_default(),
            visibility,
            bytes_out: c.bytes[0],
            bytes_in: c.bytes[1],
            first_time_us: c.first_time_us,
            capture: self.capture,
        });
    }
}
