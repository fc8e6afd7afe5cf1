//! SASL GSSAPI (Kerberos) for the own fetch path, spoken through the same Cyrus SASL library
//! and GSSAPI plugin that librdkafka uses (rdkafka's `gssapi` feature links the system's
//! libsasl2), so that both paths log in alike: the same Kerberos library, `krb5.conf`, ticket
//! cache and service principal `<service_name>/<broker host>`.
//!
//! The ticket comes from the process's ticket cache. With a keytab, librdkafka's `kinit`
//! fills that cache when the consumer is created (before the own path's first connection, which
//! follows the group's assignment) and renews it; without one, the cache is used as it is,
//! as librdkafka uses it. The exchange is RFC 4752 as Kafka runs it: GSS-API tokens until the
//! security context is established (mutual authentication), then the server's wrapped offer
//! of security layers, answered with "none" (Kafka protects nothing at the SASL layer; TLS
//! does, under SASL_SSL).
//!
//! Nothing secret passes through here: Kerberos keeps its keys in the ticket cache and the
//! keytab, and Cyrus's error details name principals and realms only.

use std::ffi::{c_char, c_int, c_uint, c_ulong, c_void, CStr, CString};
use std::ptr;

const SASL_OK: c_int = 0;
const SASL_CONTINUE: c_int = 1;
const SASL_CB_LIST_END: c_ulong = 0;
const SASL_CB_USER: c_ulong = 0x4001;
const SASL_CB_AUTHNAME: c_ulong = 0x4002;

/// `sasl_callback_t`.
#[repr(C)]
struct Callback {
    id: c_ulong,
    proc_: Option<unsafe extern "C" fn() -> c_int>,
    context: *mut c_void,
}

/// `sasl_conn_t`, opaque.
#[repr(C)]
struct SaslConn {
    _private: [u8; 0],
}

#[link(name = "sasl2")]
extern "C" {
    fn sasl_client_init(callbacks: *const Callback) -> c_int;
    fn sasl_client_new(
        service: *const c_char,
        server_fqdn: *const c_char,
        iplocalport: *const c_char,
        ipremoteport: *const c_char,
        prompt_supp: *const Callback,
        flags: c_uint,
        pconn: *mut *mut SaslConn,
    ) -> c_int;
    fn sasl_client_start(
        conn: *mut SaslConn,
        mechlist: *const c_char,
        prompt_need: *mut *mut c_void,
        clientout: *mut *const c_char,
        clientoutlen: *mut c_uint,
        mech: *mut *const c_char,
    ) -> c_int;
    fn sasl_client_step(
        conn: *mut SaslConn,
        serverin: *const c_char,
        serverinlen: c_uint,
        prompt_need: *mut *mut c_void,
        clientout: *mut *const c_char,
        clientoutlen: *mut c_uint,
    ) -> c_int;
    fn sasl_errdetail(conn: *mut SaslConn) -> *const c_char;
    fn sasl_errstring(
        code: c_int,
        langlist: *const c_char,
        outlang: *mut *const c_char,
    ) -> *const c_char;
    fn sasl_dispose(pconn: *mut *mut SaslConn);
}

/// The identities Cyrus asks for: none given, so the GSSAPI plugin logs in as the ticket's
/// principal with no separate authorization id (librdkafka answers the same for GSSAPI).
unsafe extern "C" fn no_name(
    _context: *mut c_void,
    _id: c_int,
    result: *mut *const c_char,
    len: *mut c_uint,
) -> c_int {
    if !result.is_null() {
        // SAFETY: Cyrus passes writable out-pointers (or null, checked).
        unsafe { *result = ptr::null() };
    }
    if !len.is_null() {
        // SAFETY: as above.
        unsafe { *len = 0 };
    }
    SASL_OK
}

/// Loads Cyrus's client plugins once. librdkafka has done so already when it was built with
/// Cyrus (Cyrus counts the calls), so this only matters if the own path connects first.
fn init() -> Result<(), String> {
    static INIT: std::sync::OnceLock<c_int> = std::sync::OnceLock::new();
    // SAFETY: a null callback list is allowed (defaults for every option).
    let code = *INIT.get_or_init(|| unsafe { sasl_client_init(ptr::null()) });
    if code == SASL_OK {
        Ok(())
    } else {
        Err(format!("Cyrus SASL did not start: {}", errstring(code)))
    }
}

fn errstring(code: c_int) -> String {
    // SAFETY: sasl_errstring returns a static string for any code.
    let s = unsafe { sasl_errstring(code, ptr::null(), ptr::null_mut()) };
    if s.is_null() {
        format!("SASL error {code}")
    } else {
        // SAFETY: non-null, NUL-terminated, static.
        unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned()
    }
}

/// One connection's exchange; disposed when dropped.
struct Exchange {
    conn: *mut SaslConn,
    /// Cyrus keeps a pointer to this list for the connection's life.
    _callbacks: Box<[Callback; 3]>,
}

impl Drop for Exchange {
    fn drop(&mut self) {
        // SAFETY: conn came from sasl_client_new and is disposed once.
        unsafe { sasl_dispose(&mut self.conn) };
    }
}

impl Exchange {
    fn new(service: &str, host: &str) -> Result<Exchange, String> {
        init()?;
        let service = CString::new(service).map_err(|_| "service name holds a NUL byte")?;
        let host = CString::new(host).map_err(|_| "broker host holds a NUL byte")?;
        // SAFETY (the transmutes): Cyrus calls each callback with the signature its id
        // defines; SASL_CB_USER and SASL_CB_AUTHNAME are both sasl_getsimple_t, no_name's.
        let getsimple = unsafe {
            std::mem::transmute::<
                unsafe extern "C" fn(*mut c_void, c_int, *mut *const c_char, *mut c_uint) -> c_int,
                unsafe extern "C" fn() -> c_int,
            >(no_name)
        };
        let callbacks = Box::new([
            Callback {
                id: SASL_CB_USER,
                proc_: Some(getsimple),
                context: ptr::null_mut(),
            },
            Callback {
                id: SASL_CB_AUTHNAME,
                proc_: Some(getsimple),
                context: ptr::null_mut(),
            },
            Callback {
                id: SASL_CB_LIST_END,
                proc_: None,
                context: ptr::null_mut(),
            },
        ]);
        let mut conn = ptr::null_mut();
        // SAFETY: the strings live through the call (Cyrus copies them); the callback list
        // lives as long as the Exchange that owns it and the connection.
        let code = unsafe {
            sasl_client_new(
                service.as_ptr(),
                host.as_ptr(),
                ptr::null(),
                ptr::null(),
                callbacks.as_ptr(),
                0,
                &mut conn,
            )
        };
        if code != SASL_OK || conn.is_null() {
            return Err(format!("Cyrus SASL: {}", errstring(code)));
        }
        Ok(Exchange {
            conn,
            _callbacks: callbacks,
        })
    }

    /// Why the last call failed, in Cyrus's (and Kerberos's) words.
    fn detail(&self, code: c_int) -> String {
        // SAFETY: conn is live; the detail string is owned by it and copied at once.
        let d = unsafe { sasl_errdetail(self.conn) };
        if d.is_null() {
            errstring(code)
        } else {
            // SAFETY: non-null and NUL-terminated.
            unsafe { CStr::from_ptr(d) }.to_string_lossy().into_owned()
        }
    }

    /// The first token; `Ok((code, token))` with `code` SASL_OK or SASL_CONTINUE.
    fn start(&mut self) -> Result<(c_int, Vec<u8>), String> {
        let mut out: *const c_char = ptr::null();
        let mut len: c_uint = 0;
        let mut mech: *const c_char = ptr::null();
        // SAFETY: conn is live; the out-pointers are valid for the call.
        let code = unsafe {
            sasl_client_start(
                self.conn,
                c"GSSAPI".as_ptr(),
                ptr::null_mut(),
                &mut out,
                &mut len,
                &mut mech,
            )
        };
        self.output(code, out, len)
    }

    /// The answer to the server's `token`.
    fn step(&mut self, token: &[u8]) -> Result<(c_int, Vec<u8>), String> {
        // Cyrus wants a NUL after the server's bytes (not counted).
        let mut input = Vec::with_capacity(token.len() + 1);
        input.extend_from_slice(token);
        input.push(0);
        let inlen = c_uint::try_from(token.len()).map_err(|_| "server token too long")?;
        let mut out: *const c_char = ptr::null();
        let mut len: c_uint = 0;
        // SAFETY: conn is live; input outlives the call; the out-pointers are valid.
        let code = unsafe {
            sasl_client_step(
                self.conn,
                input.as_ptr().cast(),
                inlen,
                ptr::null_mut(),
                &mut out,
                &mut len,
            )
        };
        self.output(code, out, len)
    }

    fn output(
        &self,
        code: c_int,
        out: *const c_char,
        len: c_uint,
    ) -> Result<(c_int, Vec<u8>), String> {
        if code != SASL_OK && code != SASL_CONTINUE {
            return Err(self.detail(code));
        }
        let token = if out.is_null() || len == 0 {
            Vec::new()
        } else {
            // SAFETY: Cyrus's output is `len` bytes, valid until the next call on conn; it
            // is copied now.
            unsafe { std::slice::from_raw_parts(out.cast::<u8>(), len as usize) }.to_vec()
        };
        Ok((code, token))
    }
}

/// Logs in to the broker at `host` as the ticket cache's principal, over `round` (one
/// SaslAuthenticate token out, the broker's answer back), for service `service`.
pub fn authenticate(
    service: &str,
    host: &str,
    mut round: impl FnMut(&[u8]) -> Result<Vec<u8>, String>,
) -> Result<(), String> {
    let mut ex = Exchange::new(service, host)?;
    let (mut code, mut out) = ex.start()?;
    // A context of a few tokens; a broker that keeps asking is not speaking GSSAPI.
    for _ in 0..16 {
        let answer = round(&out)?;
        if code == SASL_OK {
            // The last token (our choice of security layer) is sent; the broker's answer
            // to it is empty.
            return Ok(());
        }
        (code, out) = ex.step(&answer)?;
    }
    Err("the GSSAPI exchange did not end after 16 rounds".into())
}
