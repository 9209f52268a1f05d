//! `stream.device` in Python: a command by name, its reply as a dict (the Python side is
//! `dmapickle.device.Device`).

use std::sync::Mutex;

use dmapickle_core::control::{LinkKind, Reply, Request};
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::{ControlError, Controller};

pyo3::create_exception!(
    _native,
    DeviceError,
    PyRuntimeError,
    "The device answered a command with an error: nothing was applied."
);

/// The request `command` names (`value` for the settings).
fn request(command: &str, value: Option<u64>) -> PyResult<Request> {
    let need = || {
        value
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| PyValueError::new_err(format!("{command} needs a value 0..2**32")))
    };
    Ok(match command {
        "info" => Request::GetInfo,
        "stats" => Request::GetStats,
        "start" => Request::Start,
        "stop" => Request::Stop,
        "ping" => Request::Ping {
            host_ns: crate::stream::monotonic_ns(),
        },
        "rate_hz" => Request::SetRate { rate_hz: need()? },
        "block_rows" => Request::SetBlockRows { rows: need()? },
        other => return Err(PyValueError::new_err(format!("unknown command {other:?}"))),
    })
}

/// Sends `command` with `controller` (the GIL released while it waits, running `idle`: the
/// stream moves the messages its reader queued meanwhile aside) and returns the reply as a dict.
pub(crate) fn call<'py>(
    py: Python<'py>,
    controller: Option<&Mutex<Controller>>,
    command: &str,
    value: Option<u64>,
    timeout: Option<f64>,
    idle: &(dyn Fn() + Sync),
) -> PyResult<Bound<'py, PyDict>> {
    let Some(controller) = controller else {
        return Err(PyOSError::new_err(
            "this source cannot take commands (use tcp://, unix:// or serial://)",
        ));
    };
    let req = request(command, value)?;
    let reply = py.detach(|| {
        let mut c = controller.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = timeout {
            c.timeout = std::time::Duration::from_secs_f64(t.max(0.001));
        }
        c.call_while(req, &mut || idle())
    });
    let reply = match reply {
        Ok(r) => r,
        Err(ControlError::Device(e)) => {
            return Err(DeviceError::new_err(ControlError::Device(e).to_string()))
        }
        Err(e @ ControlError::Timeout { .. }) => {
            return Err(PyTimeoutError::new_err(e.to_string()))
        }
        Err(e) => return Err(PyOSError::new_err(e.to_string())),
    };
    let d = PyDict::new(py);
    match reply {
        Reply::Info(i) => {
            d.set_item(
                "firmware",
                format!("{}.{}.{}", i.firmware[0], i.firmware[1], i.firmware[2]),
            )?;
            d.set_item("wire_version", i.wire_version)?;
            d.set_item("control_version", i.control_version)?;
            let link = match i.link {
                LinkKind::Inline => "inline",
                LinkKind::Shared => "shared",
            };
            d.set_item("link", link)?;
            d.set_item("region", i.region)?;
            d.set_item("region_len", i.region_len)?;
            d.set_item("slots", i.slots)?;
            d.set_item("block_rows", i.block_rows)?;
            d.set_item("max_block_rows", i.max_block_rows)?;
            d.set_item("channels", i.channels)?;
            d.set_item("rate_hz", i.rate_hz)?;
            d.set_item("max_rate_hz", i.max_rate_hz)?;
            d.set_item("running", i.running)?;
            d.set_item("next_seq", i.next_seq)?;
        }
        Reply::Applied { at_seq } => d.set_item("at_seq", at_seq)?,
        Reply::Stats(s) => {
            d.set_item("published", s.published)?;
            d.set_item("adc_stalls", s.adc_stalls)?;
            d.set_item("overflows", s.overflows)?;
            d.set_item("lent", s.lent)?;
            d.set_item("dropped", s.dropped)?;
            d.set_item("commands", s.commands)?;
            d.set_item("bytes_skipped", s.bytes_skipped)?;
            d.set_item("repeats", s.repeats)?;
        }
        Reply::Pong { host_ns, device_us } => {
            d.set_item("host_ns", host_ns)?;
            d.set_item("device_us", device_us)?;
        }
        Reply::Error(e) => return Err(DeviceError::new_err(format!("{e:?}"))),
    }
    let resent = controller.lock().unwrap_or_else(|e| e.into_inner()).resent;
    d.set_item("resent_total", resent)?;
    Ok(d)
}
