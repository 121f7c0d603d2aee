//! The transport glue between vpcd's raw APDUs and the PIV app: command and
//! response chaining, plus the three things real YubiKey clients insist on.

use heapless::Vec as HVec;
use iso7816::command::CommandView;
use iso7816::Status;
use piv_authenticator::{Authenticator, Client};

/// yubico-piv-tool and the `yubikey` crate select PIV with this short AID.
const PIV_AID_SHORT: [u8; 5] = [0xa0, 0x00, 0x00, 0x03, 0x08];
const PIV_AID_FULL: [u8; 11] = [
    0xa0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00,
];
const INS_SELECT: u8 = 0xa4;
const INS_GET_RESPONSE: u8 = 0xc0;
const INS_YK_GET_VERSION: u8 = 0xfd;
const INS_YK_GET_METADATA: u8 = 0xf7;
const INS_YK_ATTEST: u8 = 0xf9;
/// The `yubikey` crate refuses any other major version, and 5.4 is the last
/// line whose default management key is 3DES (what the card starts with).
const YK_VERSION: [u8; 3] = [5, 4, 3];
const MAX_REPLY: usize = 8192;

pub struct Card<T: Client> {
    app: Authenticator<T>,
    chained: Vec<u8>,
    pending: Vec<u8>,
}

impl<T: Client> Card<T> {
    pub fn new(app: Authenticator<T>) -> Self {
        Card {
            app,
            chained: Vec::new(),
            pending: Vec::new(),
        }
    }

    fn handle(&mut self, apdu: &[u8]) -> Vec<u8> {
        let Some(parsed) = Parsed::new(apdu) else {
            return status(Status::WrongLength);
        };
        if parsed.ins == INS_GET_RESPONSE {
            return self.next_chunk(parsed.le);
        }
        self.pending.clear();
        if parsed.cla & 0x10 != 0 {
            self.chained.extend_from_slice(parsed.data);
            return status(Status::Success);
        }
        let mut data = std::mem::take(&mut self.chained);
        data.extend_from_slice(parsed.data);
        if parsed.ins == INS_YK_GET_VERSION {
            let mut out = YK_VERSION.to_vec();
            out.extend_from_slice(&[0x90, 0x00]);
            return out;
        }
        // The app answers GET METADATA with an empty success and ATTEST with
        // 6A81; a YubiKey without those features answers 6D00, which clients
        // (the `yubikey` crate, ykcs11) take as "not supported".
        if parsed.ins == INS_YK_GET_METADATA || parsed.ins == INS_YK_ATTEST {
            return status(Status::InstructionNotSupportedOrInvalid);
        }
        if parsed.ins == INS_SELECT && parsed.p1 == 0x04 && data == PIV_AID_SHORT {
            data = PIV_AID_FULL.to_vec();
        }
        if parsed.ins == INS_SELECT {
            // A YubiKey forgets a verified PIN when PIV is selected again
            // (clients count on it to read the retry counter); the app keeps
            // it across connections, so log out explicitly.
            self.logout();
        }
        // Re-encode as one extended APDU with Le = 65536, so the app never
        // sees a chained command or a missing Le (which it takes as Le = 0).
        let mut full = vec![parsed.cla & !0x10, parsed.ins, parsed.p1, parsed.p2, 0];
        if !data.is_empty() {
            full.extend_from_slice(&(data.len() as u16).to_be_bytes());
            full.extend_from_slice(&data);
        }
        full.extend_from_slice(&[0, 0]);
        let Ok(view) = CommandView::try_from(full.as_slice()) else {
            return status(Status::WrongLength);
        };
        let mut reply: HVec<u8, MAX_REPLY> = HVec::new();
        match self.app.respond(view, reply.as_mut_view()) {
            Ok(()) => {
                self.pending = reply.to_vec();
                self.next_chunk(parsed.le)
            }
            Err(s) => status(s),
        }
    }

    /// VERIFY with P1=FF: reset the PIN's security status (SP 800-73-4).
    fn logout(&mut self) {
        let apdu = [0x00, 0x20, 0xff, 0x80];
        if let Ok(view) = CommandView::try_from(&apdu[..]) {
            let mut reply: HVec<u8, MAX_REPLY> = HVec::new();
            let _ = self.app.respond(view, reply.as_mut_view());
        }
    }

    /// Hands out the pending reply at most `le` bytes at a time, with 61xx
    /// while more remains (GET RESPONSE fetches the rest).
    fn next_chunk(&mut self, le: usize) -> Vec<u8> {
        let n = le.min(self.pending.len());
        let mut out: Vec<u8> = self.pending.drain(..n).collect();
        if self.pending.is_empty() {
            out.extend_from_slice(&[0x90, 0x00]);
        } else {
            out.extend_from_slice(&[0x61, self.pending.len().min(255) as u8]);
        }
        out
    }
}

fn status(s: Status) -> Vec<u8> {
    let sw: [u8; 2] = s.into();
    sw.to_vec()
}

struct Parsed<'a> {
    cla: u8,
    ins: u8,
    p1: u8,
    p2: u8,
    data: &'a [u8],
    /// A missing Le means 256 to the clients we serve.
    le: usize,
}

impl<'a> Parsed<'a> {
    fn new(apdu: &'a [u8]) -> Option<Self> {
        if apdu.len() < 4 {
            return None;
        }
        let (cla, ins, p1, p2) = (apdu[0], apdu[1], apdu[2], apdu[3]);
        let body = &apdu[4..];
        let short_le = |b: u8| if b == 0 { 256 } else { b as usize };
        let (data, le) = match body.len() {
            0 => (&body[..0], 256),
            1 => (&body[..0], short_le(body[0])),
            _ if body[0] == 0 && body.len() >= 3 => {
                // extended length
                let n = u16::from_be_bytes([body[1], body[2]]) as usize;
                if body.len() == 3 {
                    (&body[..0], if n == 0 { 65536 } else { n })
                } else {
                    let data = body.get(3..3 + n)?;
                    let rest = &body[3 + n..];
                    let le = match rest.len() {
                        0 => 256,
                        2 => match u16::from_be_bytes([rest[0], rest[1]]) {
                            0 => 65536,
                            v => v as usize,
                        },
                        _ => return None,
                    };
                    (data, le)
                }
            }
            _ => {
                let n = body[0] as usize;
                let data = body.get(1..1 + n)?;
                let le = match body.len() - 1 - n {
                    0 => 256,
                    1 => short_le(body[1 + n]),
                    _ => return None,
                };
                (data, le)
            }
        };
        Some(Parsed {
            cla,
            ins,
            p1,
            p2,
            data,
            le,
        })
    }
}

impl<T: Client> vpicc::VSmartCard for Card<T> {
    fn reset(&mut self) {
        self.chained.clear();
        self.pending.clear();
        self.logout();
    }

    fn execute(&mut self, msg: &[u8]) -> Vec<u8> {
        self.handle(msg)
    }
}
