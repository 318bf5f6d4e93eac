//! The client side of the protocol, for `record` in sealed mode: connect, send the
//! header and the payload, shut down the write side, read the one-line answer;
//! all of it within one deadline. Blocking and std-only: `record` is a short
//! process that starts no runtime.

use super::proto::{self, Answer, Header};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::FromRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// A request up to this size (header and payload) is sent with one write.
const ONE_WRITE: usize = 64 * 1024;

/// Where the event went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub stream: String,
    pub seq: u64,
    pub hash: String,
    /// Set when the sealer recorded the payload as its digest: why.
    pub note: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the sealer at {0} cannot be reached: {1}")]
    Unreachable(String, io::Error),
    #[error("talking to the sealer: {0}")]
    Io(io::Error),
    #[error("the sealer did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the sealer refused the event: {0}")]
    Refused(String),
    #[error(transparent)]
    Answer(#[from] proto::ProtoError),
}

/// Sends one request to the sealer at `socket` and waits for its answer, all within
/// `timeout`.
pub fn send(
    socket: &Path,
    header: &Header,
    payload: &[u8],
    timeout: Duration,
) -> Result<Sealed, ClientError> {
    let deadline = Instant::now() + timeout;
    let mut conn = connect(socket, timeout)
        .map_err(|e| ClientError::Unreachable(socket.display().to_string(), e))?;
    // One write for the whole request when it is small: the sealer wakes once.
    let mut request = header.encode();
    let sent = if payload.len() <= ONE_WRITE {
        request.extend_from_slice(payload);
        write_within(&mut conn, &request, deadline)
    } else {
        write_within(&mut conn, &request, deadline)
            .and_then(|()| write_within(&mut conn, payload, deadline))
    }
    .and_then(|()| conn.shutdown(std::net::Shutdown::Write));
    // A sealer that refused early closes its end: its answer still says why.
    let answer = read_answer(&mut conn, deadline);
    let line = match (answer, sent) {
        (Ok(line), _) if !line.is_empty() => line,
        (Err(e), _) | (_, Err(e)) if is_timeout(&e) => return Err(ClientError::Timeout(timeout)),
        (_, Err(e)) | (Err(e), _) => return Err(ClientError::Io(e)),
        (Ok(_), Ok(())) => {
            return Err(ClientError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the sealer closed the connection without an answer",
            )));
        }
    };
    match Answer::parse(&line)? {
        Answer::Sealed {
            stream,
            seq,
            hash,
            note,
        } => Ok(Sealed {
            stream,
            seq,
            hash,
            note,
        }),
        Answer::Refused { error } => Err(ClientError::Refused(error)),
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Connects to the Unix socket at `path`, waiting at most `timeout` for room in
/// its queue (`SO_SNDTIMEO` bounds a Unix socket's connect).
fn connect(path: &Path, timeout: Duration) -> io::Result<UnixStream> {
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain data; zeroed is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the socket path is too long for a Unix socket",
        ));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: socket() returns a new descriptor or -1; from_raw_fd takes ownership
    // of a valid one only.
    let conn = unsafe {
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        UnixStream::from_raw_fd(fd)
    };
    conn.set_write_timeout(Some(timeout.max(Duration::from_millis(1))))?;
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    // SAFETY: `addr` is a valid sockaddr_un of at least `len` bytes; the descriptor
    // is owned by `conn` for the duration of the call.
    let rc = unsafe {
        libc::connect(
            std::os::unix::io::AsRawFd::as_raw_fd(&conn),
            (&addr as *const libc::sockaddr_un).cast(),
            len as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(conn)
}

/// Writes all of `bytes` before `deadline`.
fn write_within(conn: &mut UnixStream, mut bytes: &[u8], deadline: Instant) -> io::Result<()> {
    while !bytes.is_empty() {
        conn.set_write_timeout(Some(left(deadline)?))?;
        match conn.write(&bytes[..bytes.len().min(1 << 20)]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads the answer line (to the end of the connection, at most
/// [`proto::MAX_ANSWER_BYTES`]) before `deadline`.
fn read_answer(conn: &mut UnixStream, deadline: Instant) -> io::Result<Vec<u8>> {
    let mut line = Vec::with_capacity(256);
    let mut chunk = [0u8; 4096];
    loop {
        conn.set_read_timeout(Some(left(deadline)?))?;
        match conn.read(&mut chunk) {
            Ok(0) => return Ok(line),
            Ok(n) => {
                line.extend_from_slice(&chunk[..n]);
                if line.contains(&b'\n') || line.len() >= proto::MAX_ANSWER_BYTES {
                    return Ok(line);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The time left before `deadline`, an error once it has passed.
fn left(deadline: Instant) -> io::Result<Duration> {
    let d = deadline.saturating_duration_since(Instant::now());
    if d.is_zero() {
        return Err(io::ErrorKind::TimedOut.into());
    }
    Ok(d)
}
