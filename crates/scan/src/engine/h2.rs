//! HTTP/2 and gRPC inside the scan: where a flow turns to HTTP/2 (preface, `Upgrade: h2c`),
//! each stream's headers and body searched like an HTTP/1.x message's, gRPC messages walked
//! as protobuf, and a stream opened by extended CONNECT (RFC 8441) read as WebSocket frames.

use std::net::SocketAddr;

use super::{BodyParts, Flow, Place, Session, Timing};
use crate::finding::decode;
use crate::protocols::grpc::{self, Kind};
use crate::protocols::h2::{Connection, PREFACE, StreamData, WebSocketStream};
use crate::protocols::http::{Direction, Message};
use crate::protocols::protobuf::{self, Value};
use crate::protocols::websocket::{self, Deflate, Extensions};
use crate::transport::reassembly::Run;

/// How a gRPC body is framed and compressed.
pub(super) struct Grpc<'a> {
    /// `application/grpc-web-text`: the whole body is base64.
    pub text: bool,
    /// gRPC-Web: a frame with bit 7 set holds trailers.
    pub web: bool,
    /// `grpc-encoding`: what a frame with the compressed bit is compressed with.
    pub encoding: Option<&'a str>,
}

/// The value of a header in raw HTTP/1.x header lines, trimmed; `name` is lower case.
pub(super) fn header_line<'h>(head: &'h [u8], name: &[u8]) -> Option<&'h str> {
    head.split(|&b| b == b'\n').find_map(|line| {
        let colon = memchr::memchr(b':', line)?;
        line[..colon]
            .trim_ascii()
            .eq_ignore_ascii_case(name)
            .then(|| std::str::from_utf8(line[colon + 1..].trim_ascii()).ok())
            .flatten()
    })
}

impl Session<'_> {
    /// Where HTTP/2 frames start in this run, if the flow speaks HTTP/2: after the client's
    /// preface (prior knowledge, or TLS with ALPN h2: a client always sends the preface), or
    /// from the start of the server's stream once the client's was HTTP/2.
    pub(super) fn h2_start(
        &mut self,
        flow: &mut Flow,
        to_server: bool,
        run: &Run,
    ) -> Option<usize> {
        if run.start == 0 && to_server && run.data.starts_with(PREFACE) {
            flow.h2.get_or_insert_with(Box::default);
            return Some(PREFACE.len());
        }
        // A server that answered `Upgrade: h2c` starts with its HTTP/1.1 101, read as HTTP/1.
        let h2 = flow.h2.is_some();
        (h2 && !(run.start == 0 && run.data.starts_with(b"HTTP/1."))
            && !(run.start == 0
                && to_server
                && crate::protocols::http::starts_message(&run.data).is_some()))
        .then_some(0)
    }

    /// After an HTTP/1.1 message: how many bytes of `rest` to skip before HTTP/2 frames, when
    /// this message switched the connection to HTTP/2 (`Upgrade: h2c` and its 101).
    pub(super) fn h2_after_upgrade(
        &mut self,
        flow: &mut Flow,
        message: &Message<'_>,
        rest: &[u8],
    ) -> Option<usize> {
        match message.direction {
            Direction::Request => {
                let upgrade = header_line(message.head, b"upgrade")?;
                if !upgrade
                    .split(',')
                    .any(|p| p.trim().eq_ignore_ascii_case("h2c"))
                {
                    return None;
                }
                let conn = flow.h2.get_or_insert_with(Box::default);
                // The upgraded request is stream 1 (RFC 7540 3.2).
                if let Some(host) = &message.host {
                    conn.set_authority(1, host.clone());
                }
                rest.starts_with(PREFACE).then_some(PREFACE.len())
            }
            Direction::Response => {
                let switched = message.target.split(|&b| b == b' ').nth(1) == Some(b"101");
                (switched && flow.h2.is_some()).then_some(0)
            }
        }
    }

    /// Reads HTTP/2 frames of one direction and searches every stream.
    pub(super) fn h2_frames(
        &mut self,
        flow: &mut Flow,
        to_server: bool,
        data: &[u8],
        base: usize,
        timing: Timing<'_>,
    ) {
        let conn: &mut Connection = flow.h2.get_or_insert_with(Box::default);
        let parsed = if self.in_piece {
            conn.read_more(to_server, data, base)
        } else {
            conn.read(to_server, data, base)
        };
        let authorities: Vec<Option<String>> = parsed
            .streams
            .iter()
            .map(|s| conn.authority(s.stream).map(str::to_owned))
            .collect();
        let websockets: Vec<Option<WebSocketStream>> = parsed
            .streams
            .iter()
            .map(|s| conn.websocket(s.stream).cloned())
            .collect();
        let connect_protocol_enabled = conn.connect_protocol_enabled;
        let (src, dst) = if to_server {
            (flow.client, flow.server)
        } else {
            (flow.server, flow.client)
        };
        for warning in parsed.warnings {
            self.tally
                .warnings
                .push(format!("{}: {src} → {dst}: {warning}", self.label));
        }
        for ((stream, authority), ws) in parsed.streams.iter().zip(authorities).zip(websockets) {
            let mut place = self.place(flow, "h2c", to_server, true, authority.clone());
            place.stream = Some(stream.stream);
            let Some(ws) = ws else {
                self.h2_stream(stream, &place, timing, (src, dst));
                continue;
            };
            self.h2_headers(stream, &place, timing);
            if !to_server && !connect_protocol_enabled {
                self.tally.warnings.push(format!(
                    "{}: {src} → {dst}: http/2 stream {} opened a websocket by extended CONNECT, but the server did not send SETTINGS_ENABLE_CONNECT_PROTOCOL; its frames are read as websocket anyway",
                    self.label, stream.stream
                ));
            }
            let mut place = self.place(flow, "websocket", to_server, true, authority);
            place.stream = Some(stream.stream);
            self.h2_websocket(stream, &ws, to_server, &place, timing, (src, dst));
        }
    }

    /// The DATA of a stream opened by extended CONNECT (RFC 8441), one direction, read as
    /// WebSocket frames. The client's direction is scanned before the server's answer is
    /// read, so its compression follows its own offer: a client sets RSV1 only once
    /// permessage-deflate was agreed, and an inflater that keeps its window between messages
    /// also reads messages compressed without context takeover. The server's follows its
    /// response's `sec-websocket-extensions` (or, if the capture missed it, the offer).
    fn h2_websocket(
        &mut self,
        stream: &StreamData,
        ws: &WebSocketStream,
        to_server: bool,
        place: &Place,
        timing: Timing<'_>,
        (src, dst): (SocketAddr, SocketAddr),
    ) {
        if stream.body.is_empty() {
            return;
        }
        let answer = (!to_server)
            .then(|| stream.header("sec-websocket-extensions"))
            .flatten()
            .map(|v| String::from_utf8_lossy(v).into_owned());
        let deflate = match answer.or_else(|| ws.offer.clone()) {
            Some(ext) if to_server => match Extensions::parse(&ext).deflate_for(true) {
                Deflate::On { .. } => Deflate::On {
                    no_context_takeover: false,
                },
                Deflate::Off => Deflate::Off,
            },
            Some(ext) => Extensions::parse(&ext).deflate_for(false),
            None => Deflate::Off,
        };
        let parsed = websocket::Direction::new(deflate).parse(&stream.body);
        for problem in parsed.problems {
            self.tally.warnings.push(format!(
                "{}: websocket {src} → {dst} (http/2 stream {}): {problem}",
                self.label, stream.stream
            ));
        }
        self.websocket_messages(&parsed.messages, &["h2"], stream.body_offset, place, timing);
    }

    fn h2_stream(
        &mut self,
        stream: &StreamData,
        place: &Place,
        timing: Timing<'_>,
        ends: (SocketAddr, SocketAddr),
    ) {
        self.h2_headers(stream, place, timing);
        self.h2_body(stream, place, timing, ends);
    }

    /// Searches a stream's header blocks: `:path` URL-decoded, the rest as header lines.
    fn h2_headers(&mut self, stream: &StreamData, place: &Place, timing: Timing<'_>) {
        for block in &stream.headers {
            let mut lines = Vec::new();
            for field in &block.fields {
                if field.name == b":path" {
                    let path = field.value.as_slice();
                    match decode::url_decode(path, true) {
                        Some(d) => {
                            self.search(&d, &["h2", "http-uri", "url"], block.offset, place, timing)
                        }
                        None => self.search(path, &["h2", "http-uri"], block.offset, place, timing),
                    }
                    continue;
                }
                lines.extend_from_slice(&field.name);
                lines.extend_from_slice(b": ");
                lines.extend_from_slice(&field.value);
                lines.extend_from_slice(b"\r\n");
            }
            // `http-header`, as for HTTP/1.1 and HTTP/3, so one request reads alike on each.
            self.search(&lines, &["h2", "http-header"], block.offset, place, timing);
        }
    }

    /// Searches a stream's DATA as an HTTP body, decoded by its content coding.
    fn h2_body(
        &mut self,
        stream: &StreamData,
        place: &Place,
        timing: Timing<'_>,
        ends: (SocketAddr, SocketAddr),
    ) {
        if stream.body.is_empty() {
            return;
        }
        let text = |name: &str| {
            stream
                .header(name)
                .map(|v| String::from_utf8_lossy(v).trim().to_ascii_lowercase())
        };
        let content_encoding: Vec<String> = text("content-encoding")
            .map(|v| {
                v.split(',')
                    .map(|c| c.trim().to_owned())
                    .filter(|c| !c.is_empty() && c != "identity")
                    .collect()
            })
            .unwrap_or_default();
        let content_type = text("content-type").unwrap_or_default();
        let grpc_encoding = text("grpc-encoding");
        let parts = BodyParts {
            data: &stream.body,
            content_encoding: &content_encoding,
            content_type: &content_type,
            grpc_encoding: grpc_encoding.as_deref(),
        };
        self.http_body(
            &parts,
            vec!["h2", "http-body"],
            stream.body_offset,
            place,
            timing,
            ends,
        );
    }

    /// Splits a gRPC or gRPC-Web body into messages, inflates compressed ones and walks each
    /// as protobuf; what does not parse is searched as it is.
    pub(super) fn grpc_body(
        &mut self,
        body: &[u8],
        grpc: &Grpc<'_>,
        layers: &mut Vec<&str>,
        offset: usize,
        place: &Place,
        timing: Timing<'_>,
    ) {
        let decoded;
        let body = if grpc.text {
            match grpc::decode_text(body) {
                Some(d) => {
                    layers.push("base64");
                    decoded = d;
                    &decoded[..]
                }
                None => {
                    self.search(body, layers, offset, place, timing);
                    return;
                }
            }
        } else {
            body
        };
        layers.push(if grpc.web { "grpc-web" } else { "grpc" });
        let (frames, cut) = grpc::messages(body);
        if cut {
            self.tally.warnings.push(format!(
                "{}: grpc body to {} has a message cut short or over {} bytes; the rest is searched raw",
                self.label,
                place.dst,
                grpc::GRPC_MESSAGE_BYTES_MAX
            ));
            let done = frames.last().map_or(0, |f| f.offset + f.data.len());
            self.search(&body[done..], layers, offset, place, timing);
        }
        for frame in frames {
            let mut inflated = None;
            let data = match frame.kind {
                Kind::Trailers => {
                    layers.push("trailer");
                    self.search(frame.data, layers, offset, place, timing);
                    layers.pop();
                    continue;
                }
                Kind::Message => frame.data,
                Kind::Compressed => {
                    let coding = grpc.encoding.unwrap_or("gzip");
                    let (out, problem) = decode::decompress(coding, frame.data);
                    if let Some(problem) = problem {
                        self.tally.warnings.push(format!(
                            "{}: grpc message to {}, grpc-encoding {coding}: {problem}",
                            self.label, place.dst
                        ));
                    }
                    if out.is_empty() {
                        self.search(frame.data, layers, offset, place, timing);
                        continue;
                    }
                    inflated = Some((coding_layer(coding), out));
                    inflated.as_ref().map_or(frame.data, |(_, d)| d.as_slice())
                }
            };
            if let Some((layer, _)) = &inflated {
                layers.push(layer);
            }
            self.protobuf(data, layers, offset, place, timing);
            if inflated.is_some() {
                layers.pop();
            }
        }
    }

    /// Searches each leaf of a protobuf message under `protobuf > field N`; a message that is
    /// not protobuf is searched whole.
    fn protobuf(
        &mut self,
        data: &[u8],
        layers: &mut Vec<&str>,
        offset: usize,
        place: &Place,
        timing: Timing<'_>,
    ) {
        let Some(leaves) = protobuf::leaves(data) else {
            self.search(data, layers, offset, place, timing);
            return;
        };
        if protobuf::is_cut(&leaves) {
            self.tally.warnings.push(format!(
                "{}: protobuf message to {} has more than {} fields; the rest are not searched",
                self.label,
                place.dst,
                protobuf::PROTOBUF_FIELDS_MAX
            ));
        }
        layers.push("protobuf");
        let mut number = String::new();
        for leaf in &leaves {
            let label = leaf.label();
            number.clear();
            let bytes: &[u8] = match leaf.value {
                Value::Number(v) | Value::Fixed64(v) => {
                    number.push_str(&v.to_string());
                    number.as_bytes()
                }
                Value::Fixed32(v) => {
                    number.push_str(&v.to_string());
                    number.as_bytes()
                }
                Value::Text(b) | Value::Bytes(b) => b,
            };
            let mut path: Vec<&str> = layers.clone();
            path.push(&label);
            self.search(bytes, &path, offset, place, timing);
        }
        layers.pop();
    }
}

fn coding_layer(coding: &str) -> &'static str {
    match coding {
        "gzip" | "x-gzip" => "gzip",
        "deflate" => "deflate",
        "br" => "br",
        "zstd" => "zstd",
        "snappy" => "snappy",
        _ => "decoded",
    }
}
