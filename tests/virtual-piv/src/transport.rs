//! The vpcd protocol (a big-endian u16 length, then the message; a 1-byte
//! message is a power/reset/ATR command), served here rather than by
//! `vpicc::Connection` so that TCP_QUICKACK can be re-armed around each read.
//!
//! vpcd writes the length and the body separately with Nagle on: unless we
//! ACK the length at once, the body waits for our delayed ACK (~40 ms per
//! APDU). Linux drops QUICKACK whenever it sees an interactive exchange, so
//! it is set again before every read.

use std::io::{Read, Result, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;

use vpicc::VSmartCard;

const POWER_OFF: u8 = 0;
const POWER_ON: u8 = 1;
const RESET: u8 = 2;
const GET_ATR: u8 = 4;

pub fn serve(mut stream: TcpStream, card: &mut impl VSmartCard) -> Result<()> {
    loop {
        quickack(&stream);
        let mut size = [0u8; 2];
        stream.read_exact(&mut size)?;
        quickack(&stream);
        let mut msg = vec![0u8; u16::from_be_bytes(size) as usize];
        stream.read_exact(&mut msg)?;
        let reply = match msg.as_slice() {
            [] => return Ok(()),
            [POWER_OFF] => {
                card.power_off();
                continue;
            }
            [POWER_ON] => {
                card.power_on();
                continue;
            }
            [RESET] => {
                card.reset();
                continue;
            }
            [GET_ATR] => card.atr().to_vec(),
            [_] => continue,
            apdu => card.execute(apdu),
        };
        let mut out = (reply.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&reply);
        stream.write_all(&out)?;
    }
}

fn quickack(socket: &TcpStream) {
    let one: libc::c_int = 1;
    // SAFETY: a valid socket fd and a c_int option of the right size.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}
