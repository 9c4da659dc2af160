//! The link model's arithmetic, apart from any socket: when a byte the client sent may reach the far side, given
//! the link's round-trip time, a new connection's handshakes and (optionally) TCP's slow start.
//!
//! The uplink's bandwidth is the kernel's (a token bucket on the client's side of a veth pair): by the time the proxy
//! reads a byte, the byte has crossed the shaped link. The proxy then holds it for what the kernel cannot model:
//! - the one-way delay (half the round trip), per direction;
//! - a new connection's handshakes: bytes leave no earlier than one round trip (TCP) after the connection was opened,
//!   two with TLS (1.3: one more round trip);
//! - the link's rate for the bytes it held back, which the kernel's shaper let through before the proxy could take
//!   them (a client's first bytes cross the shaper during the modeled handshake);
//! - with slow start on, a congestion window per connection: 10 segments in the first round trip, doubling each round
//!   trip in which the sender used all of it, back to 10 after an idle spell longer than the retransmission timeout
//!   (Linux's `tcp_slow_start_after_idle`). No losses are modeled, so the window never shrinks otherwise.
//!
//! Times are offsets from an arbitrary origin, so the functions are pure and tests can state them exactly.

use std::time::Duration;

/// TCP's maximum segment payload on a 1500-byte path with timestamps (1500 − 20 IP − 20 TCP − 12 options).
pub const MSS: u64 = 1448;
/// Bytes on the wire per full segment: the segment, its TCP/IP headers and Ethernet's 14. The kernel's shaper counts
/// these, so it is set this much above the profile's rate for a bulk TCP transfer to reach the profile's rate.
pub const WIRE_BYTES_PER_SEGMENT: u64 = 1514;
/// Linux's initial congestion window, in segments (RFC 6928).
pub const INITIAL_WINDOW_SEGMENTS: u64 = 10;
/// Linux's lower bound of the retransmission timeout: the idle spell after which the window starts over is one
/// round trip plus this.
pub const RTO_MIN: Duration = Duration::from_millis(200);

/// What a link does to the bytes that cross it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    /// Bits a second a bulk TCP transfer carries upwards (its payload, as speed tests report it).
    pub uplink_bits_per_second: u64,
    pub rtt: Duration,
    /// Slow start per connection.
    pub slow_start: bool,
    /// A TLS 1.3 handshake per new connection: one more round trip before its first byte.
    pub tls: bool,
}

impl Profile {
    pub fn one_way(&self) -> Duration {
        self.rtt / 2
    }

    /// Round trips a new connection waits before its first byte leaves: TCP's handshake, and TLS's.
    pub fn handshake_round_trips(&self) -> u32 {
        1 + u32::from(self.tls)
    }

    /// The earliest a new connection opened at `opened` may send.
    pub fn ready_at(&self, opened: Duration) -> Duration {
        opened + self.rtt * self.handshake_round_trips()
    }

    /// The rate to give the kernel's shaper so that TCP's payload crosses at the profile's rate.
    pub fn shaper_bits_per_second(&self) -> u64 {
        self.uplink_bits_per_second * WIRE_BYTES_PER_SEGMENT / MSS
    }

    /// Retransmission timeout with a steady round trip: the idle spell after which slow start begins again.
    pub fn rto(&self) -> Duration {
        self.rtt + RTO_MIN
    }
}

/// One connection's congestion window, as slow start grows it: which bytes may leave in which round trip.
#[derive(Debug, Clone)]
pub struct SlowStart {
    rtt: Duration,
    rto: Duration,
    /// Bytes a round may carry now.
    window: u64,
    /// The current round: when it began and what it has carried.
    round: Option<(Duration, u64)>,
    /// When the last byte left: an idle spell longer than the RTO starts slow start over.
    last_sent: Option<Duration>,
}

impl SlowStart {
    pub fn new(profile: &Profile) -> SlowStart {
        SlowStart { rtt: profile.rtt, rto: profile.rto(), window: initial_window(), round: None, last_sent: None }
    }

    /// When `len` bytes that are ready to leave at `ready` do leave: one or more pieces, each `(time, bytes)`, in
    /// order, their bytes summing to `len`.
    pub fn schedule(&mut self, ready: Duration, len: u64) -> Vec<(Duration, u64)> {
        if self.last_sent.is_some_and(|last| ready > last + self.rto) {
            self.window = initial_window();
            self.round = None;
        }
        let mut pieces = Vec::new();
        let (mut at, mut left) = (ready, len);
        while left > 0 {
            let (start, used) = match self.round {
                // A round that is over: the next one begins when the bytes are ready, or when this one ends.
                Some((start, used)) if at >= start + self.rtt => {
                    self.grow_if_filled(used);
                    (at, 0)
                }
                Some((start, used)) if used >= self.window => {
                    self.grow_if_filled(used);
                    at = start + self.rtt;
                    (at, 0)
                }
                Some(round) => round,
                None => (at, 0),
            };
            let take = left.min(self.window - used);
            let leaves = at.max(start);
            pieces.push((leaves, take));
            self.round = Some((start, used + take));
            self.last_sent = Some(leaves);
            left -= take;
        }
        pieces
    }

    /// The window doubles after a round trip that used all of it (a sender limited by its window), and stays as it
    /// was after one the application left partly empty.
    fn grow_if_filled(&mut self, used: u64) {
        if used >= self.window {
            self.window = self.window.saturating_mul(2);
        }
    }
}

fn initial_window() -> u64 {
    INITIAL_WINDOW_SEGMENTS * MSS
}

/// When `len` bytes have crossed a link of `bits_per_second` whose earlier bytes finished crossing at `previous`:
/// bytes the proxy read at `read` (already spaced by the kernel's shaper) at once; bytes the model held back until
/// `ready` (a handshake, a window), which the shaper let through early and the proxy then takes all together, one
/// after another at the link's rate from `ready` on.
pub fn crossed(read: Duration, ready: Duration, previous: Duration, len: u64, bits_per_second: u64) -> Duration {
    if ready <= read {
        return ready;
    }
    ready.max(previous + Duration::from_secs_f64(len as f64 * 8.0 / bits_per_second as f64))
}

/// The time a delay line hands bytes on: never before they could leave (`leaves`), one one-way delay later, and never
/// before the bytes it handed on earlier (a connection's bytes stay in order).
pub fn hand_on_at(leaves: Duration, one_way: Duration, previous: Duration) -> Duration {
    (leaves + one_way).max(previous)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn profile(rtt_ms: u64, slow_start: bool, tls: bool) -> Profile {
        Profile { uplink_bits_per_second: 50_000_000, rtt: MS * rtt_ms as u32, slow_start, tls }
    }

    #[test]
    fn a_new_connection_waits_one_round_trip_and_one_more_with_tls() {
        assert_eq!(profile(30, false, false).ready_at(MS * 5), MS * 35);
        assert_eq!(profile(30, false, true).ready_at(MS * 5), MS * 65);
        assert_eq!(profile(150, false, false).one_way(), MS * 75);
    }

    #[test]
    fn the_shaper_carries_the_headers_on_top_of_the_profiles_rate() {
        let p = profile(30, false, false);
        assert_eq!(p.shaper_bits_per_second(), 52_279_005);
        assert_eq!(p.rto(), MS * 230);
    }

    #[test]
    fn slow_start_doubles_the_window_every_round_trip_it_fills() {
        let mut window = SlowStart::new(&profile(100, true, false));
        let iw = INITIAL_WINDOW_SEGMENTS * MSS;
        // 7 windows' worth ready at once: 1 + 2 + 4 windows leave in the first three round trips.
        let pieces = window.schedule(Duration::ZERO, 7 * iw);
        assert_eq!(pieces, vec![(Duration::ZERO, iw), (MS * 100, 2 * iw), (MS * 200, 4 * iw)]);
        // The next bytes, ready within the third round trip, wait for the fourth, whose window is 8.
        assert_eq!(window.schedule(MS * 250, 10 * iw), vec![(MS * 300, 8 * iw), (MS * 400, 2 * iw)]);
    }

    #[test]
    fn a_window_left_partly_empty_does_not_grow() {
        let mut window = SlowStart::new(&profile(100, true, false));
        let iw = INITIAL_WINDOW_SEGMENTS * MSS;
        assert_eq!(window.schedule(Duration::ZERO, 100), vec![(Duration::ZERO, 100)]);
        // A new round trip (the application was slow, not the window): still one initial window.
        assert_eq!(window.schedule(MS * 150, 2 * iw), vec![(MS * 150, iw), (MS * 250, iw)]);
    }

    #[test]
    fn bytes_within_a_round_with_room_leave_when_ready() {
        let mut window = SlowStart::new(&profile(100, true, false));
        assert_eq!(window.schedule(MS * 10, 1000), vec![(MS * 10, 1000)]);
        assert_eq!(window.schedule(MS * 20, 1000), vec![(MS * 20, 1000)]);
    }

    #[test]
    fn an_idle_spell_longer_than_the_rto_starts_slow_start_over() {
        let p = profile(100, true, false);
        let iw = INITIAL_WINDOW_SEGMENTS * MSS;
        let mut window = SlowStart::new(&p);
        window.schedule(Duration::ZERO, 7 * iw); // the window is now 8 initial windows
        let last = MS * 200;
        // Idle for the RTO exactly: the window is kept.
        assert_eq!(window.schedule(last + p.rto(), 8 * iw), vec![(last + p.rto(), 8 * iw)]);
        // Idle for longer: one initial window again.
        let later = last + p.rto() + p.rto() + MS;
        assert_eq!(window.schedule(later, 2 * iw), vec![(later, iw), (later + p.rtt, iw)]);
    }

    #[test]
    fn bytes_held_back_cross_the_link_at_its_rate_when_let_go() {
        // 1 Mbit/s: 125,000 bytes take a second, after the link's earlier bytes.
        assert_eq!(crossed(MS * 10, MS * 500, MS * 100, 125_000, 1_000_000), MS * 1100);
        assert_eq!(crossed(MS * 10, MS * 500, MS * 900, 125_000, 1_000_000), MS * 1900);
        // Held until long after the link fell quiet: they leave when let go.
        assert_eq!(crossed(MS * 10, MS * 1500, MS * 100, 125_000, 1_000_000), MS * 1500);
        // Bytes not held back were spaced by the shaper already: they crossed when read.
        assert_eq!(crossed(MS * 500, MS * 500, MS * 900, 125_000, 1_000_000), MS * 500);
    }

    #[test]
    fn a_delay_line_keeps_order_and_adds_the_one_way_delay() {
        assert_eq!(hand_on_at(MS * 10, MS * 15, Duration::ZERO), MS * 25);
        assert_eq!(hand_on_at(MS * 10, MS * 15, MS * 30), MS * 30);
    }
}
