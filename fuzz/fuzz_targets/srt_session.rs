//! The SRT listener and connection state machines (vendored srt-protocol)
//! fed arbitrary datagram sequences from a few peers, with time advancing:
//! no panic, no unbounded work per datagram, and every action formats with
//! `Debug`. Access requests are granted, so datagrams from a peer that got
//! through the handshake reach a live connection; a second connection is
//! made directly (its handshake done) so that arbitrary control and data
//! packets reach the sender and receiver without guessing a cookie.
#![no_main]

use std::collections::HashMap;
use std::io::Cursor;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use srt_protocol::connection::{
    Action as ConnectionAction, Connection, ConnectionSettings, DuplexConnection,
    Input as ConnectionInput,
};
use srt_protocol::listener::{
    AccessControlResponse, Action as ListenerAction, Input as ListenerInput, MultiplexListener,
    NextInputContext,
};
use srt_protocol::options::{PacketCount, PacketSize};
use srt_protocol::packet::{Packet, ReceivePacketError, SeqNumber, SocketId};
use srt_protocol::protocol::handshake::Handshake;
use srt_protocol::settings::ConnInitSettings;

#[derive(Debug, Arbitrary)]
struct Step {
    /// Milliseconds that pass before this datagram arrives.
    advance_ms: u16,
    /// Which peer sends it (a few source addresses; 0 is the direct connection's peer).
    from: u8,
    /// Also queue this many bytes of media on the direct connection first.
    send: u8,
    datagram: Vec<u8>,
}

fn peer(n: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1 + n % 4], 5000))
}

/// Run a connection until it waits, bounded.
fn drain(connection: &mut DuplexConnection, now: Instant, mut input: ConnectionInput) {
    for _ in 0..10_000 {
        let action = connection.handle_input(now, input);
        let _ = format!("{action:?}");
        input = match action {
            ConnectionAction::SendPacket(_) => ConnectionInput::PacketSent,
            ConnectionAction::ReleaseData(_) => ConnectionInput::DataReleased,
            ConnectionAction::UpdateStatistics(_) => ConnectionInput::StatisticsUpdated,
            ConnectionAction::WaitForData(_) | ConnectionAction::Close => return,
        };
    }
    panic!("a connection did not settle after 10,000 actions");
}

fuzz_target!(|steps: Vec<Step>| {
    let start = Instant::now();
    let mut now = start;
    let local: SocketAddr = "127.0.0.1:9000".parse().expect("address");
    let mut listener = MultiplexListener::new(now, local, ConnInitSettings::default());
    let mut opened: HashMap<SocketAddr, DuplexConnection> = HashMap::new();
    let mut direct = DuplexConnection::new(Connection {
        settings: ConnectionSettings {
            remote: peer(0),
            remote_sockid: SocketId(2),
            local_sockid: SocketId(3),
            socket_start_time: start,
            rtt: Duration::from_millis(10),
            init_seq_num: SeqNumber::new_truncate(1000),
            max_packet_size: PacketSize(1316),
            max_flow_size: PacketCount(8192),
            send_tsbpd_latency: Duration::from_millis(120),
            recv_tsbpd_latency: Duration::from_millis(120),
            too_late_packet_drop: true,
            peer_idle_timeout: Duration::from_secs(5),
            recv_buffer_size: PacketCount(8192),
            send_buffer_size: PacketCount(8192),
            cipher: None,
            stream_id: None,
            bandwidth: Default::default(),
            statistics_interval: Duration::from_secs(1),
        },
        handshake: Handshake::Connector,
    });

    for step in steps.iter().take(256) {
        now += Duration::from_millis(u64::from(step.advance_ms));
        if step.send > 0 {
            let media = Bytes::from(vec![0x47; usize::from(step.send) * 8]);
            drain(&mut direct, now, ConnectionInput::Data(Some((now, media))));
        }
        let from = peer(step.from);
        let parsed = Packet::parse(&mut Cursor::new(&step.datagram[..]), false)
            .map(|p| (p, from))
            .map_err(ReceivePacketError::Parse);
        if step.from % 4 == 0 {
            drain(&mut direct, now, ConnectionInput::Packet(parsed));
            continue;
        }
        if let Some(connection) = opened.get_mut(&from) {
            drain(connection, now, ConnectionInput::Packet(parsed));
            continue;
        }
        // The listener, driven as srt-tokio drives it: every action's
        // outcome is the next input; access requests are granted.
        let mut input = ListenerInput::Packet(parsed);
        for _ in 0..100 {
            let action = listener.handle_input(now, input);
            let _ = format!("{action:?}");
            let next = NextInputContext::for_action(&action);
            input = match action {
                ListenerAction::RequestAccess(session, _) => ListenerInput::AccessResponse(Some((
                    session,
                    AccessControlResponse::Accepted(None),
                ))),
                ListenerAction::OpenConnection(session, boxed) => {
                    let (_, connection) = *boxed;
                    opened.insert(session.0, DuplexConnection::new(connection));
                    next.input_from::<(), ()>(Ok(()))
                }
                ListenerAction::WaitForInput | ListenerAction::Close => break,
                _ => next.input_from::<(), ()>(Ok(())),
            };
        }
        let _ = listener.handle_input(now, ListenerInput::Timer);
    }
    // Time runs on with nothing arriving: timers fire, connections close.
    for _ in 0..20 {
        now += Duration::from_millis(500);
        drain(&mut direct, now, ConnectionInput::Timer);
        for connection in opened.values_mut() {
            drain(connection, now, ConnectionInput::Timer);
        }
    }
});
