//! `multicore._core`: a thin pyo3 layer over multicore-engine. Policy (serialization, retries,
//! exceptions users see) lives in Python; this file only converts types and releases the GIL
//! around anything that can block.

use std::time::{Duration, Instant};

use engine::layout::{MAX_INLINE_SIZE, MAX_SLOTS, MAX_SPIN_US, MAX_WORKERS, MIN_INLINE_SIZE, MIN_SLOTS, MIN_WORKERS};
use engine::{Action, Outcome};
use multicore_engine as engine;
use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

/// Blocking waits return to Python this often to run signal handlers (Ctrl-C) and check that the
/// supervisor is alive.
const SLICE: Duration = Duration::from_millis(100);
/// Payloads above this are copied with the GIL released.
const DETACH_COPY: usize = 64 * 1024;

/// Typed handles on the classes of `multicore.exceptions`, each imported once and cached by
/// pyo3; `check` resolves them all when `_core` is imported, so a renamed class fails that import
/// instead of the first error that needs it.
mod exceptions {
    use pyo3::prelude::*;

    macro_rules! imported {
        ($($name:ident),* $(,)?) => {
            $(pyo3::import_exception!(multicore.exceptions, $name);)*

            pub(crate) fn check(py: Python<'_>) -> PyResult<()> {
                let module = py.import("multicore.exceptions")?;
                $(module.getattr(stringify!($name))?;)*
                Ok(())
            }
        };
    }

    imported!(
        ConfigurationError,
        MulticoreOSError,
        PoolUnavailableError,
        ProtocolError,
        SerializationError,
        SharedMemoryError
    );
}

use exceptions::{
    ConfigurationError, MulticoreOSError, PoolUnavailableError, ProtocolError, SerializationError, SharedMemoryError,
};

/// The Python exception for an engine error; every one is a `MulticoreError`.
fn to_py_err(err: engine::Error) -> PyErr {
    let message = err.to_string();
    match err {
        engine::Error::Config(_) => ConfigurationError::new_err(message),
        // (errno, text), as OSError takes them, so `.errno` and `.strerror` are set.
        engine::Error::Os { source, .. } => match source.raw_os_error() {
            Some(errno) => MulticoreOSError::new_err((errno, message)),
            None => MulticoreOSError::new_err(message),
        },
        engine::Error::SharedMemory { .. } => SharedMemoryError::new_err(message),
        engine::Error::Protocol(_) | engine::Error::StaleHandle { .. } => ProtocolError::new_err(message),
        engine::Error::Unavailable(_) => PoolUnavailableError::new_err(message),
    }
}

/// Tag bit of a framed multi-part payload ([`engine::frame`]); set and cleared here only.
const FRAMED: u32 = 1 << 31;

/// A payload from Python: one `bytes`, or a list of buffers (a pickle and its large buffers).
struct Outgoing {
    tag: u32,
    single: Option<Py<PyBytes>>,
    header: Vec<u8>,
    buffers: Vec<PyBuffer<u8>>,
}

impl Outgoing {
    fn new(tag: u32, payload: &Bound<'_, PyAny>) -> PyResult<Outgoing> {
        if tag & FRAMED != 0 {
            return Err(ProtocolError::new_err(format!("payload tag {tag} is not below 2**31")));
        }
        if let Ok(bytes) = payload.cast::<PyBytes>() {
            return Ok(Outgoing { tag, single: Some(bytes.clone().unbind()), header: Vec::new(), buffers: Vec::new() });
        }
        let not_a_payload = |e: PyErr| {
            let err = SerializationError::new_err(format!(
                "a payload is bytes or a sequence of contiguous byte buffers, not {}",
                payload.get_type().name().map_or_else(|_| "this object".into(), |n| n.to_string())
            ));
            err.set_cause(payload.py(), Some(e));
            err
        };
        let mut buffers = Vec::new();
        for item in payload.try_iter().map_err(not_a_payload)? {
            let buffer = PyBuffer::<u8>::get(&item?).map_err(not_a_payload)?;
            if !buffer.is_c_contiguous() {
                return Err(SerializationError::new_err("payload parts must be contiguous byte buffers"));
            }
            buffers.push(buffer);
        }
        let lens: Vec<usize> = buffers.iter().map(|b| b.len_bytes()).collect();
        Ok(Outgoing { tag: tag | FRAMED, single: None, header: engine::frame::header(&lens), buffers })
    }

    /// The parts to write, borrowed from the Python objects (kept alive by `self`). Large ones
    /// are copied with the GIL released: `bytes` are immutable and an exported `bytearray`
    /// cannot be resized, so the memory stays valid (a concurrent in-place write by another
    /// thread would only change the bytes sent, as with any copy).
    fn parts<'a>(&'a self, py: Python<'a>) -> Vec<&'a [u8]> {
        match &self.single {
            Some(b) => vec![b.as_bytes(py)],
            None => std::iter::once(self.header.as_slice())
                .chain(self.buffers.iter().map(|b| {
                    // SAFETY: the buffer is C-contiguous (checked in new) and stays exported,
                    // so its memory is valid and unresized while `self` lives.
                    unsafe { std::slice::from_raw_parts(b.buf_ptr() as *const u8, b.len_bytes()) }
                }))
                .collect(),
        }
    }

    /// Hands the parts to `write` (an engine submit or reply), with the GIL released when the
    /// copy into shared memory is large enough to be worth it.
    fn write_with<T: Send>(&self, py: Python<'_>, write: impl FnOnce(u32, &[&[u8]]) -> T + Send) -> T {
        let parts = self.parts(py);
        let tag = self.tag;
        if parts.iter().map(|p| p.len()).sum::<usize>() > DETACH_COPY {
            py.detach(|| write(tag, &parts))
        } else {
            write(tag, &parts)
        }
    }
}

/// Builds the Python value of a received payload: `bytes`, or a list of `bytes` when framed.
fn incoming(py: Python<'_>, tag: u32, bytes: &[u8]) -> PyResult<(u32, Py<PyAny>)> {
    if tag & FRAMED == 0 {
        return Ok((tag, PyBytes::new(py, bytes).into_any().unbind()));
    }
    let parts = engine::frame::split(bytes).map_err(to_py_err)?;
    let list = PyList::empty(py);
    for part in parts {
        list.append(PyBytes::new(py, part))?;
    }
    Ok((tag & !FRAMED, list.into_any().unbind()))
}

fn seconds(t: Option<f64>) -> Option<Duration> {
    t.map(|s| Duration::from_secs_f64(if s.is_finite() { s.max(0.0) } else { 1e9 }))
}

/// The parent's handle on a pool.
#[pyclass(frozen, module = "multicore._core")]
struct Pool {
    inner: engine::Pool,
}

#[pymethods]
impl Pool {
    /// Every option is a required keyword: the defaults live in Python's `Options` alone.
    #[new]
    #[pyo3(signature = (*, workers, slots, inline_size, worker_spin_us, parent_spin_us, max_payload, segment_keep_bytes))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        workers: u32,
        slots: u32,
        inline_size: u32,
        worker_spin_us: u32,
        parent_spin_us: u32,
        max_payload: Option<u64>,
        segment_keep_bytes: u64,
    ) -> PyResult<Self> {
        let cfg = engine::Config {
            workers,
            slots,
            inline_size,
            worker_spin_us,
            parent_spin_us,
            max_payload,
            segment_keep_bytes,
        };
        Ok(Pool { inner: engine::Pool::create(&cfg).map_err(to_py_err)? })
    }

    fn become_supervisor(&self) -> PyResult<Supervisor> {
        let inner = self.inner.become_supervisor().map_err(to_py_err)?;
        Ok(Supervisor { inner })
    }

    fn supervisor_started(&self, pid: u32) -> PyResult<()> {
        self.inner.supervisor_started(pid).map_err(to_py_err)
    }

    fn forget_in_child(&self) {
        self.inner.forget_in_child();
    }

    fn alive(&self) -> bool {
        self.inner.supervisor_alive()
    }

    /// Publishes a call; returns (slot, ticket), or None when every slot is taken.
    fn submit(&self, py: Python<'_>, tag: u32, payload: &Bound<'_, PyAny>) -> PyResult<Option<(u32, u64)>> {
        let outgoing = Outgoing::new(tag, payload)?;
        outgoing.write_with(py, |tag, parts| self.inner.submit(tag, parts)).map_err(to_py_err)
    }

    /// ("done", tag, bytes) | ("lost", pid, status) | None while the call is pending.
    fn take(&self, py: Python<'_>, slot: u32, ticket: u64) -> PyResult<Option<Py<PyAny>>> {
        let out = self.inner.take(slot, ticket, |tag, bytes| incoming(py, tag, bytes)).map_err(to_py_err)?;
        Ok(match out {
            Outcome::Done(payload) => {
                let (tag, payload) = payload?;
                Some((pyo3::intern!(py, "done"), tag, payload).into_pyobject(py)?.into_any().unbind())
            }
            Outcome::Lost { pid, status } => {
                Some(("lost", pid, status.to_raw()).into_pyobject(py)?.into_any().unbind())
            }
            Outcome::Pending => None,
        })
    }

    /// Waits for a call like `take`, returning None on timeout or once any worker died since
    /// `lost_seen` (a `lost_seq()` reading; default: now), so the caller can check its other
    /// calls. Ctrl-C raises KeyboardInterrupt within 100 ms.
    #[pyo3(signature = (slot, ticket, timeout=None, lost_seen=None))]
    fn wait(
        &self,
        py: Python<'_>,
        slot: u32,
        ticket: u64,
        timeout: Option<f64>,
        lost_seen: Option<u32>,
    ) -> PyResult<Option<Py<PyAny>>> {
        let deadline = seconds(timeout).map(|d| Instant::now() + d);
        let lost_seen = lost_seen.unwrap_or_else(|| self.inner.lost_seq());
        loop {
            if let Some(out) = self.take(py, slot, ticket)? {
                return Ok(Some(out));
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) || self.inner.lost_seq() != lost_seen {
                return Ok(None);
            }
            let until = deadline.map_or(now + SLICE, |d| d.min(now + SLICE));
            py.detach(|| self.inner.wait(slot, ticket, until, lost_seen));
            py.check_signals()?;
            // Usually the result is there now: only a call still pending pays for the liveness
            // check (a syscall).
            if let Some(out) = self.take(py, slot, ticket)? {
                return Ok(Some(out));
            }
            if !self.inner.supervisor_alive() {
                return Err(PoolUnavailableError::new_err("the pool's supervisor process exited; the pool is gone"));
            }
        }
    }

    fn lost_seq(&self) -> u32 {
        self.inner.lost_seq()
    }

    /// Flags a call as awaited by an event loop (the async doorbell rings when it finishes);
    /// True when it already finished, so the caller takes it now.
    fn arm_async(&self, slot: u32, ticket: u64) -> bool {
        self.inner.arm_async(slot, ticket)
    }

    /// The async doorbell: an eventfd, readable once a flagged call finished or a worker died.
    #[getter]
    fn async_bell(&self) -> i32 {
        self.inner.async_bell()
    }

    /// The supervisor's pidfd (readable once it exited), or -1 when there is none.
    #[getter]
    fn supervisor_pidfd(&self) -> i32 {
        self.inner.supervisor_pidfd()
    }

    /// Takes back a call no worker has claimed yet; False when it is no longer queued.
    fn withdraw(&self, slot: u32, ticket: u64) -> bool {
        self.inner.withdraw(slot, ticket)
    }

    fn wait_for_free_slot(&self, py: Python<'_>, timeout: f64) -> PyResult<()> {
        let until = Instant::now() + seconds(Some(timeout)).unwrap_or(SLICE).min(SLICE);
        py.detach(|| self.inner.wait_for_free_slot(until));
        py.check_signals()
    }

    /// Withdraws or abandons a call; returns the pid of the worker that was running it, if any.
    #[pyo3(signature = (slot, ticket, kill=false))]
    fn cancel(&self, slot: u32, ticket: u64, kill: bool) -> Option<u32> {
        match self.inner.cancel(slot, ticket, kill) {
            engine::Cancelled::Abandoned { pid } => Some(pid),
            _ => None,
        }
    }

    fn shutdown(&self, py: Python<'_>, grace: f64) {
        let grace = seconds(Some(grace)).unwrap_or_default();
        py.detach(|| self.inner.shutdown(grace));
    }

    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let info = self.inner.info();
        let d = PyDict::new(py);
        d.set_item("state", format!("{:?}", info.state).to_lowercase())?;
        d.set_item("supervisor_pid", info.supervisor_pid)?;
        d.set_item("owner_pid", self.inner.owner_pid())?;
        d.set_item("slots", info.slots)?;
        d.set_item("slots_in_use", info.slots_in_use)?;
        d.set_item("queued", info.queued)?;
        d.set_item("completed", info.completed)?;
        d.set_item("discarded_results", info.discarded)?;
        let workers = PyList::empty(py);
        for w in info.workers {
            let wd = PyDict::new(py);
            wd.set_item("index", w.index)?;
            wd.set_item("pid", (w.pid != 0).then_some(w.pid))?;
            wd.set_item("state", w.state.name())?;
            wd.set_item("generation", w.generation)?;
            wd.set_item("tasks_done", w.tasks_done)?;
            wd.set_item("tasks_total", w.tasks_total)?;
            wd.set_item("respawns", w.respawns)?;
            wd.set_item("recycles", w.recycles)?;
            wd.set_item("last_exit", w.last_exit.map(|(pid, s)| (pid, s.to_raw())))?;
            workers.append(wd)?;
        }
        d.set_item("workers", workers)?;
        Ok(d)
    }
}

/// The supervisor process's handle (single-threaded process, so unsendable).
#[pyclass(unsendable, module = "multicore._core")]
struct Supervisor {
    inner: engine::Supervisor,
}

#[pymethods]
impl Supervisor {
    /// Worker indices to fork, or None when the supervisor should stop its workers and exit.
    fn next_action(&mut self, py: Python<'_>) -> PyResult<Option<Vec<u32>>> {
        let inner = &mut self.inner;
        match py.detach(|| inner.next_action()).map_err(to_py_err)? {
            Action::Spawn(indices) => Ok(Some(indices)),
            Action::Exit => Ok(None),
        }
    }

    fn spawned(&mut self, index: u32, pid: u32) -> PyResult<()> {
        self.inner.spawned(index, pid).map_err(to_py_err)
    }

    fn become_worker(&mut self, index: u32) -> PyResult<Worker> {
        Ok(Worker { inner: self.inner.become_worker(index).map_err(to_py_err)? })
    }

    fn stop_workers(&mut self, py: Python<'_>, grace: f64) {
        let grace = seconds(Some(grace)).unwrap_or_default();
        let inner = &mut self.inner;
        py.detach(|| inner.stop_workers(grace));
    }
}

/// A worker process's handle.
#[pyclass(unsendable, module = "multicore._core")]
struct Worker {
    inner: engine::WorkerChannel,
}

#[pymethods]
impl Worker {
    #[getter]
    fn tasks_done(&self) -> u64 {
        self.inner.tasks_done()
    }

    fn ready(&self) {
        self.inner.ready();
    }

    /// Blocks until a call is claimed: (slot, ticket); None when the pool is stopping.
    fn next_call(&mut self, py: Python<'_>) -> Option<(u32, u64)> {
        let inner = &mut self.inner;
        py.detach(|| inner.next_call()).map(|c| (c.slot, c.ticket))
    }

    fn read_request(&self, py: Python<'_>, slot: u32, ticket: u64) -> PyResult<(u32, Py<PyAny>)> {
        let call = engine::Call { slot, ticket };
        self.inner.read_request(call, |tag, bytes| incoming(py, tag, bytes)).map_err(to_py_err)?
    }

    /// Publishes a response; False when the parent had abandoned the call.
    fn reply(
        &mut self,
        py: Python<'_>,
        slot: u32,
        ticket: u64,
        tag: u32,
        payload: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        let call = engine::Call { slot, ticket };
        let outgoing = Outgoing::new(tag, payload)?;
        let inner = &mut self.inner;
        outgoing.write_with(py, |tag, parts| inner.reply(call, tag, parts)).map_err(to_py_err)
    }

    fn retire(&mut self, py: Python<'_>, max_wait: f64) {
        let max_wait = seconds(Some(max_wait)).unwrap_or_default();
        let inner = &mut self.inner;
        py.detach(|| inner.retire(max_wait));
    }
}

#[pyfunction]
fn usable_cpus() -> u32 {
    engine::host::usable_cpus()
}

#[pyfunction]
fn load_average() -> Option<f64> {
    engine::host::load_average()
}

#[pyfunction]
fn rss_bytes(pid: u32) -> u64 {
    engine::host::rss_bytes(pid)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Rust log records go to Python's `logging`: pyo3-log turns a record's target into the logger
    // name (`::` -> `.`), and the engine logs under "multicore.engine.<module>", so they follow
    // the application's handlers for "multicore" instead of writing to stderr on their own.
    let _ = pyo3_log::try_init();
    exceptions::check(m.py())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // The engine's limits of the pool options, so Python's option checks derive from them.
    m.add("MIN_WORKERS", MIN_WORKERS)?;
    m.add("MAX_WORKERS", MAX_WORKERS)?;
    m.add("MIN_SLOTS", MIN_SLOTS)?;
    m.add("MAX_SLOTS", MAX_SLOTS)?;
    m.add("MIN_INLINE_SIZE", MIN_INLINE_SIZE)?;
    m.add("MAX_INLINE_SIZE", MAX_INLINE_SIZE)?;
    m.add("MAX_SPIN_US", MAX_SPIN_US)?;
    m.add_class::<Pool>()?;
    m.add_class::<Supervisor>()?;
    m.add_class::<Worker>()?;
    m.add_function(wrap_pyfunction!(usable_cpus, m)?)?;
    m.add_function(wrap_pyfunction!(load_average, m)?)?;
    m.add_function(wrap_pyfunction!(rss_bytes, m)?)?;
    Ok(())
}
