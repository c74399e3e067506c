//! A cheap SRT live-mode caller for load generation.
//!
//! The handshake is srt-protocol's own sans-IO caller ([`Connect`]), so it
//! is the same HSv5 exchange (SRT extension, streamid) srt-tokio performs.
//! After it, data packets are written straight onto a non-blocking UDP
//! socket, one `send` per 1316-byte message, from whatever thread drives
//! the caller: no task, timer, channel or send buffer per connection, which
//! is what made srt-tokio callers cost as much as the receiver they were
//! loading. The control traffic a live receiver sends back is answered the
//! way a sender must: an ACK with an ACKACK (so the receiver's RTT stays
//! true), a NAK by retransmitting the packets it lists from a bounded
//! history ([`HISTORY`] packets), a shutdown by failing.
//!
//! It sends no keep-alives (a load generator always has data to send), has
//! no congestion control or too-late drop, and does not encrypt.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use srt_protocol::connection::ConnectionSettings;
use srt_protocol::options::SocketOptions;
use srt_protocol::packet::{
    ControlPacket, ControlTypes, DataEncryption, DataPacket, MsgNumber, Packet, PacketLocation,
    ReceivePacketError, SeqNumber, TimeStamp,
};
use srt_protocol::protocol::pending_connection::ConnectionResult;
use srt_protocol::protocol::pending_connection::connect::Connect;

/// Packets kept for retransmission: libsrt's default send buffer (8192
/// packets), about 17 s of a 5 Mbit/s stream.
pub const HISTORY: usize = 8192;

/// Largest datagram read from the receiver (control packets are small).
const RECV_BUFFER: usize = 1500;

/// What a caller has sent and been asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallerCounts {
    /// Data packets sent for the first time.
    pub sent: u64,
    /// Data packets sent again because a NAK listed them.
    pub retransmitted: u64,
    /// Packets a NAK listed that had already left the history: lost.
    pub lost: u64,
    /// ACKs received (each answered with an ACKACK when it asks for one).
    pub acks: u64,
    /// NAKs received.
    pub naks: u64,
}

/// One connected caller.
#[derive(Debug)]
pub struct RawCaller {
    socket: UdpSocket,
    settings: ConnectionSettings,
    next_seq: SeqNumber,
    next_msg: MsgNumber,
    /// The last [`HISTORY`] data packets, oldest first.
    history: VecDeque<DataPacket>,
    out: BytesMut,
    counts: CallerCounts,
}

impl RawCaller {
    /// Call `remote` with `streamid`, both sides' latency set to `latency`,
    /// and complete the handshake within `timeout` (blocking).
    pub fn connect(
        remote: SocketAddr,
        streamid: &str,
        latency: Duration,
        timeout: Duration,
    ) -> io::Result<RawCaller> {
        let local: SocketAddr = match remote.ip() {
            IpAddr::V4(_) => "127.0.0.1:0",
            IpAddr::V6(_) => "[::1]:0",
        }
        .parse()
        .map_err(io::Error::other)?;
        let socket = UdpSocket::bind(local)?;
        socket.connect(remote)?;
        let mut options = SocketOptions::default();
        options.sender.peer_latency = latency;
        options.receiver.latency = latency;
        let mut connect = Connect::new(
            remote,
            local.ip(),
            options.into(),
            Some(streamid.to_owned()),
            rand::random(),
        );
        let deadline = Instant::now() + timeout;
        let tick = Duration::from_millis(100);
        let mut next_tick = Instant::now();
        let mut buf = vec![0; RECV_BUFFER];
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no SRT handshake with {remote} within {timeout:?}"),
                ));
            }
            let result = if now >= next_tick {
                next_tick = now + tick;
                connect.handle_tick(now)
            } else {
                socket.set_read_timeout(Some(next_tick - now))?;
                match socket.recv(&mut buf) {
                    Ok(len) => {
                        let packet = Packet::parse(&mut &buf[..len], remote.is_ipv6())
                            .map(|p| (p, remote))
                            .map_err(ReceivePacketError::Parse);
                        connect.handle_packet(packet, Instant::now())
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock
                                | io::ErrorKind::TimedOut
                                | io::ErrorKind::ConnectionRefused
                        ) =>
                    {
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            };
            match result {
                ConnectionResult::SendPacket((packet, _)) => send_packet(&socket, &packet)?,
                ConnectionResult::Connected(reply, connection) => {
                    if let Some((packet, _)) = reply {
                        send_packet(&socket, &packet)?;
                    }
                    socket.set_nonblocking(true)?;
                    let settings = connection.settings;
                    return Ok(RawCaller {
                        socket,
                        next_seq: settings.init_seq_num,
                        next_msg: MsgNumber::new_truncate(1),
                        settings,
                        history: VecDeque::with_capacity(HISTORY),
                        out: BytesMut::with_capacity(RECV_BUFFER),
                        counts: CallerCounts::default(),
                    });
                }
                ConnectionResult::Reject(reply, reason) => {
                    if let Some((packet, _)) = reply {
                        let _ = send_packet(&socket, &packet);
                    }
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionRefused,
                        format!("{remote} rejected {streamid}: {reason}"),
                    ));
                }
                ConnectionResult::Failure(e) => return Err(e),
                ConnectionResult::NotHandled(_)
                | ConnectionResult::NoAction
                | ConnectionResult::RequestAccess(_) => {}
            }
        }
    }

    /// What was sent and asked for so far.
    pub fn counts(&self) -> CallerCounts {
        self.counts
    }

    /// Send `payload` as one message stamped `now`.
    pub fn send(&mut self, payload: Bytes, now: Instant) -> io::Result<()> {
        self.send_or_lose(payload, now, false)
    }

    /// Number `payload` as the next message and keep it for
    /// retransmission, but do not send it, as if the network lost it: the
    /// receiver asks for it with a NAK once a later packet arrives.
    pub fn lose(&mut self, payload: Bytes, now: Instant) -> io::Result<()> {
        self.send_or_lose(payload, now, true)
    }

    fn send_or_lose(&mut self, payload: Bytes, now: Instant, lose: bool) -> io::Result<()> {
        let packet = DataPacket {
            seq_number: self.next_seq,
            message_loc: PacketLocation::ONLY,
            in_order_delivery: false,
            encryption: DataEncryption::None,
            retransmitted: false,
            message_number: self.next_msg.increment(),
            timestamp: self.timestamp(now),
            dest_sockid: self.settings.remote_sockid,
            payload,
        };
        self.next_seq += 1;
        if !lose {
            self.write_data(&packet)?;
        }
        self.counts.sent += 1;
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(packet);
        Ok(())
    }

    /// Read and answer everything the receiver has sent (non-blocking).
    /// An error when the receiver shut the connection down or the socket
    /// failed.
    pub fn poll_control(&mut self, now: Instant) -> io::Result<()> {
        let mut buf = [0u8; RECV_BUFFER];
        loop {
            let len = match self.socket.recv(&mut buf) {
                Ok(len) => len,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            };
            let Ok(Packet::Control(control)) =
                Packet::parse(&mut &buf[..len], self.settings.remote.is_ipv6())
            else {
                continue;
            };
            match control.control_type {
                ControlTypes::Ack(ack) => {
                    self.counts.acks += 1;
                    if let Some(ack_seq) = ack.full_ack_seq_number() {
                        let reply = self.control(ControlTypes::Ack2(ack_seq), now);
                        send_packet(&self.socket, &reply)?;
                    }
                }
                ControlTypes::Nak(losses) => {
                    self.counts.naks += 1;
                    for seq in losses.into_iter_decompressed() {
                        self.retransmit(seq)?;
                    }
                }
                ControlTypes::Shutdown => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "the receiver shut the connection down",
                    ));
                }
                _ => {}
            }
        }
    }

    fn retransmit(&mut self, seq: SeqNumber) -> io::Result<()> {
        let Some(first) = self.history.front().map(|p| p.seq_number) else {
            self.counts.lost += 1;
            return Ok(());
        };
        let index = (seq - first) as usize;
        match self.history.get(index).filter(|p| p.seq_number == seq) {
            Some(packet) => {
                let packet = DataPacket {
                    retransmitted: true,
                    ..packet.clone()
                };
                self.write_data(&packet)?;
                self.counts.retransmitted += 1;
            }
            None => self.counts.lost += 1,
        }
        Ok(())
    }

    fn write_data(&mut self, packet: &DataPacket) -> io::Result<()> {
        self.out.clear();
        packet.serialize(&mut self.out);
        match self.socket.send(&self.out) {
            Ok(_) => Ok(()),
            // A full socket buffer drops the datagram, as the network
            // would; the receiver's NAK brings it back.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn control(&self, control_type: ControlTypes, now: Instant) -> Packet {
        Packet::Control(ControlPacket {
            timestamp: self.timestamp(now),
            dest_sockid: self.settings.remote_sockid,
            control_type,
        })
    }

    fn timestamp(&self, now: Instant) -> TimeStamp {
        let micros = now
            .saturating_duration_since(self.settings.socket_start_time)
            .as_micros();
        // SRT timestamps are 32-bit microseconds that wrap.
        TimeStamp::from_micros(micros as u32)
    }
}

impl Drop for RawCaller {
    /// Tells the receiver the connection is over, as a closing sender does.
    fn drop(&mut self) {
        let shutdown = self.control(ControlTypes::Shutdown, Instant::now());
        let _ = send_packet(&self.socket, &shutdown);
    }
}

fn send_packet(socket: &UdpSocket, packet: &Packet) -> io::Result<()> {
    let mut out = BytesMut::with_capacity(RECV_BUFFER);
    packet.serialize(&mut out);
    socket.send(&out).map(|_| ())
}
