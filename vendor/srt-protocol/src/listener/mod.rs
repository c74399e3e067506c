mod input;
mod session;
mod statistics;

use std::{collections::HashMap, fmt::Debug, net::SocketAddr, time::Duration, time::Instant};

use crate::{packet::*, protocol::time::Timer, settings::ConnInitSettings};

use session::*;

pub use input::*;
pub use statistics::*;

#[derive(Clone, Debug)]
pub struct ListenerSettings {}

/// ferrocast patch: at most this many sessions (source addresses) may be in
/// the handshake, rejected or dropping state at once.
pub const MAX_PENDING_SESSIONS: usize = 1024;

/// ferrocast patch: a session that has not opened within this time is
/// forgotten (a caller retries its handshake for at most a few seconds).
pub const PENDING_SESSION_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct MultiplexListener {
    start_time: Instant,
    local_address: SocketAddr,
    settings: ConnInitSettings,
    sessions: HashMap<SessionId, SessionState>,
    stats: ListenerStatistics,
    stats_timer: Timer,
}

impl MultiplexListener {
    pub fn new(now: Instant, local_address: SocketAddr, settings: ConnInitSettings) -> Self {
        Self {
            start_time: now,
            local_address,
            settings,
            sessions: Default::default(),
            stats: Default::default(),
            stats_timer: Timer::new(now, Duration::from_secs(1)),
        }
    }

    pub fn handle_input(&mut self, now: Instant, input: Input) -> Action {
        match input {
            Input::Packet(packet) => self.handle_input_packet(now, packet),
            Input::AccessResponse(response) => self.handle_input_access_response(now, response),
            Input::Timer => self.handle_timer(now),
            Input::Success(result_of) => self.handle_success(now, result_of),
            Input::Failure(result_of) => self.handle_failure(now, result_of),
        }
    }

    fn handle_input_packet(&mut self, now: Instant, packet: ReceivePacketResult) -> Action {
        match packet {
            Ok(packet) => self.handle_packet(now, packet),
            Err(error) => self.handle_packet_receive_error(now, error),
        }
    }

    fn handle_input_access_response(
        &mut self,
        now: Instant,
        response: Option<(SessionId, AccessControlResponse)>,
    ) -> Action {
        match response {
            Some((session_id, response)) => {
                self.handle_access_control_response(now, session_id, response)
            }
            None => self.handle_close(),
        }
    }

    fn handle_packet(&mut self, now: Instant, packet: (Packet, SocketAddr)) -> Action {
        self.stats.rx_packets += 1;
        //self.stats.rx_bytes += packet
        let session_id = SessionId(packet.1);
        // ferrocast patch: every source address that sent one datagram kept
        // a session forever. Sessions not yet open are now bounded in number
        // (a new address past the bound is ignored until older ones expire)
        // and expire after `PENDING_SESSION_TIMEOUT` (see `handle_timer`).
        if !self.sessions.contains_key(&session_id) {
            if self.pending_count() >= MAX_PENDING_SESSIONS {
                self.stats.rx_pending_refused += 1;
                return Action::WaitForInput;
            }
            // ferrocast patch: each connection gets its own random socket id
            // (`copy_randomize`); all of them shared the listener's, so any
            // peer learned every other session's id.
            let settings = self.settings.copy_randomize();
            self.sessions
                .insert(session_id, SessionState::new_pending(settings, now));
        }
        match self.sessions.get_mut(&session_id) {
            Some(session) => session.handle_packet(now, session_id, packet),
            None => Action::WaitForInput,
        }
    }

    fn pending_count(&self) -> usize {
        self.sessions.values().filter(|s| !s.is_open()).count()
    }

    fn handle_packet_receive_error(&mut self, now: Instant, error: ReceivePacketError) -> Action {
        self.warn(now, "packet", &error);

        use ReceivePacketError::*;
        match error {
            Parse(_) => self.stats.rx_parse_errors += 1,
            Io(_) => self.stats.rx_io_errors += 1,
        }

        Action::WaitForInput
    }

    fn handle_access_control_response(
        &mut self,
        now: Instant,
        session_id: SessionId,
        response: AccessControlResponse,
    ) -> Action {
        match self.sessions.get_mut(&session_id) {
            Some(session) => session.handle_access_control_response(now, session_id, response),
            None => Action::DropConnection(session_id),
        }
    }

    fn handle_timer(&mut self, now: Instant) -> Action {
        let before = self.sessions.len();
        self.sessions.retain(|_, session| {
            session.is_open() || !session.expired(now, PENDING_SESSION_TIMEOUT)
        });
        self.stats.cx_expired += (before - self.sessions.len()) as u64;
        if self.stats_timer.check_expired(now).is_some() {
            Action::UpdateStatistics(&self.stats)
        } else {
            // TODO: create an action that returns an action with an Iterator that ticks time forward
            //  for all the sessions, yielding the results to the I/O loop
            Action::WaitForInput
        }
    }

    fn handle_success(&mut self, _now: Instant, result_of: ResultOf) -> Action {
        use ResultOf::*;
        match result_of {
            SendPacket(_) => {
                self.stats.tx_packets += 1;
            }
            RequestAccess(_) => {
                self.stats.cx_inbound += 1;
            }
            RejectConnection(session_id) => {
                self.stats.cx_rejected += 1;
                self.sessions.remove(&session_id);
            }
            OpenConnection(_) => {
                self.stats.cx_opened += 1;
            }
            DelegatePacket(_) => {
                self.stats.delegated_packets += 1;
            }
            DropConnection(session_id) => {
                self.stats.cx_dropped += 1;
                self.sessions.remove(&session_id);
            }
            UpdateStatistics => {}
        }
        Action::WaitForInput
    }

    fn handle_failure(&mut self, now: Instant, result_of: ResultOf) -> Action {
        self.warn(now, "failure", &result_of);

        use ResultOf::*;
        match result_of {
            DelegatePacket(session_id) => Action::DropConnection(session_id),
            // TODO: stats? anything else?
            _ => Action::WaitForInput,
        }
    }

    fn handle_close(&mut self) -> Action {
        Action::Close
    }

    fn warn(&self, now: Instant, tag: &str, debug: &impl Debug) {
        log::warn!(
            "{:?}|listen:{}|{} - {:?}",
            TimeSpan::from_interval(self.start_time, now),
            self.local_address.port(),
            tag,
            debug
        );
    }
}

#[cfg(test)]
mod test {
    use assert_matches::assert_matches;
    use std::{
        net::{IpAddr, Ipv4Addr},
        time::Duration,
    };

    use rand::random;

    use crate::options::{KeySize, PacketCount, PacketSize, SrtVersion};

    use super::*;

    fn conn_addr() -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 8765)
    }

    fn test_induction() -> HandshakeControlInfo {
        HandshakeControlInfo {
            init_seq_num: random(),
            max_packet_size: PacketSize(1316),
            max_flow_size: PacketCount(256_000),
            shake_type: ShakeType::Induction,
            socket_id: SocketId(15),
            syn_cookie: 0,
            peer_addr: IpAddr::from([127, 0, 0, 1]),
            info: HandshakeVsInfo::V5(HsV5Info::default()),
        }
    }

    fn test_conclusion() -> HandshakeControlInfo {
        HandshakeControlInfo {
            init_seq_num: random(),
            max_packet_size: PacketSize(1316),
            max_flow_size: PacketCount(256_000),
            shake_type: ShakeType::Conclusion,
            socket_id: SocketId(15),
            syn_cookie: crate::protocol::pending_connection::cookie::gen_cookie(&conn_addr()),
            peer_addr: IpAddr::from([127, 0, 0, 1]),
            info: HandshakeVsInfo::V5(HsV5Info {
                key_size: KeySize::Unspecified,
                ext_hs: Some(SrtControlPacket::HandshakeRequest(SrtHandshake {
                    version: SrtVersion::CURRENT,
                    flags: SrtShakeFlags::SUPPORTED,
                    send_latency: Duration::from_secs(1),
                    recv_latency: Duration::from_secs(2),
                })),
                ext_km: None,
                ext_group: None,
                sid: None,
            }),
        }
    }

    fn dest_sock_id() -> SocketId {
        SocketId(6)
    }

    fn session_id() -> SessionId {
        SessionId(conn_addr())
    }

    fn build_hs_pack(i: HandshakeControlInfo) -> Packet {
        Packet::Control(ControlPacket {
            timestamp: TimeStamp::from_micros(0),
            dest_sockid: dest_sock_id(),
            control_type: ControlTypes::Handshake(i),
        })
    }

    #[test]
    fn connect() {
        let settings = ConnInitSettings::default();
        let local = "0.0.0.0:2000".parse().unwrap();
        let mut listener = MultiplexListener::new(Instant::now(), local, settings);

        let packet = build_hs_pack(test_induction());
        let action =
            listener.handle_input(Instant::now(), Input::Packet(Ok((packet, conn_addr()))));
        assert_matches!(action, Action::SendPacket(_));

        let packet = build_hs_pack(test_conclusion());
        let action =
            listener.handle_input(Instant::now(), Input::Packet(Ok((packet, conn_addr()))));
        assert_matches!(action, Action::RequestAccess(_, _));

        let action = listener.handle_input(
            Instant::now(),
            Input::AccessResponse(Some((session_id(), AccessControlResponse::Accepted(None)))),
        );
        assert_matches!(action, Action::OpenConnection(_, _));

        use crate::listener::ResultOf::*;

        let action =
            listener.handle_input(Instant::now(), Input::Success(OpenConnection(session_id())));
        assert_matches!(action, Action::WaitForInput);

        let packet = build_hs_pack(test_conclusion());
        let action =
            listener.handle_input(Instant::now(), Input::Packet(Ok((packet, conn_addr()))));
        assert_matches!(action, Action::DelegatePacket(_, _));
    }

    #[test]
    fn reject() {
        let settings = ConnInitSettings::default();
        let local = "127.0.0.1:2000".parse().unwrap();
        let mut listener = MultiplexListener::new(Instant::now(), local, settings);

        let packet = build_hs_pack(test_induction());
        let action =
            listener.handle_input(Instant::now(), Input::Packet(Ok((packet, conn_addr()))));
        assert_matches!(action, Action::SendPacket(_));

        let packet = build_hs_pack(test_conclusion());
        let action =
            listener.handle_input(Instant::now(), Input::Packet(Ok((packet, conn_addr()))));
        assert_matches!(action, Action::RequestAccess(_, _));

        let action = listener.handle_input(
            Instant::now(),
            Input::AccessResponse(Some((
                session_id(),
                AccessControlResponse::Rejected(RejectReason::User(100)),
            ))),
        );
        assert_matches!(
            action,
            Action::RejectConnection(_, Some((Packet::Control(_), _)))
        );

        let packet = build_hs_pack(test_conclusion());
        let action =
            listener.handle_input(Instant::now(), Input::Packet(Ok((packet, conn_addr()))));
        assert_matches!(
            action,
            Action::RejectConnection(_, Some((Packet::Control(_), _)))
        );

        let action = listener.handle_input(
            Instant::now(),
            Input::Success(ResultOf::RejectConnection(session_id())),
        );
        assert_eq!(action, Action::WaitForInput);
    }

    // ferrocast regressions: state kept per source address is bounded and
    // expires; sessions get their own socket ids; a second access answer for
    // an open session is ignored.
    fn addr(n: u32) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n)), 9000)
    }

    #[test]
    fn pending_sessions_are_bounded_and_expire() {
        let start = Instant::now();
        let local = "127.0.0.1:2000".parse().unwrap();
        let mut listener = MultiplexListener::new(start, local, ConnInitSettings::default());
        for n in 0..(MAX_PENDING_SESSIONS as u32 + 100) {
            let packet = build_hs_pack(test_induction());
            let _ = listener.handle_input(start, Input::Packet(Ok((packet, addr(n)))));
        }
        assert_eq!(listener.sessions.len(), MAX_PENDING_SESSIONS);
        assert_eq!(listener.stats.rx_pending_refused, 100);

        // before the timeout nothing is forgotten; after it, everything
        let _ = listener.handle_input(start + PENDING_SESSION_TIMEOUT / 2, Input::Timer);
        assert_eq!(listener.sessions.len(), MAX_PENDING_SESSIONS);
        let _ = listener.handle_input(start + PENDING_SESSION_TIMEOUT, Input::Timer);
        assert!(listener.sessions.is_empty());
        assert_eq!(listener.stats.cx_expired, MAX_PENDING_SESSIONS as u64);

        // and a new caller is served again
        let packet = build_hs_pack(test_induction());
        let action = listener.handle_input(
            start + PENDING_SESSION_TIMEOUT,
            Input::Packet(Ok((packet, addr(1)))),
        );
        assert_matches!(action, Action::SendPacket(_));
    }

    #[test]
    fn every_session_gets_its_own_socket_id() {
        let now = Instant::now();
        let local = "127.0.0.1:2000".parse().unwrap();
        let mut listener = MultiplexListener::new(now, local, ConnInitSettings::default());
        let mut ids = std::collections::HashSet::new();
        for n in 0..50 {
            let packet = build_hs_pack(test_induction());
            match listener.handle_input(now, Input::Packet(Ok((packet, addr(n))))) {
                Action::SendPacket((Packet::Control(control), _)) => {
                    let hs = control.handshake().expect("induction response");
                    assert_ne!(hs.socket_id, listener.settings.local_sockid);
                    ids.insert(hs.socket_id);
                }
                other => panic!("expected an induction response, got {other:?}"),
            }
        }
        assert_eq!(ids.len(), 50);
    }

    #[test]
    fn a_second_accept_for_an_open_session_is_ignored() {
        let now = Instant::now();
        let settings = ConnInitSettings::default();
        let local = "0.0.0.0:2000".parse().unwrap();
        let mut listener = MultiplexListener::new(now, local, settings);
        let packet = build_hs_pack(test_induction());
        let action = listener.handle_input(now, Input::Packet(Ok((packet, conn_addr()))));
        let cookie = match action {
            Action::SendPacket((Packet::Control(control), _)) => {
                control.handshake().expect("handshake").syn_cookie
            }
            other => panic!("{other:?}"),
        };
        let mut conclusion = test_conclusion();
        conclusion.syn_cookie = cookie;
        let action = listener.handle_input(
            now,
            Input::Packet(Ok((build_hs_pack(conclusion), conn_addr()))),
        );
        assert_matches!(action, Action::RequestAccess(_, _));
        let accept = || {
            Input::AccessResponse(Some((session_id(), AccessControlResponse::Accepted(None))))
        };
        assert_matches!(
            listener.handle_input(now, accept()),
            Action::OpenConnection(_, _)
        );
        assert_eq!(listener.handle_input(now, accept()), Action::WaitForInput);
    }
}
