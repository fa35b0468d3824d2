'use strict';
/*
 * Processes a test process starts itself (servers of the cluster tests, the soak run's nodes
 * and Redis): each one is SIGKILLed by PID when the test process exits, and can be stopped by
 * PID before that.
 */
const fs = require('fs');
const { spawn } = require('child_process');
const { sleep } = require('./util');

const children = new Set();

process.on('exit', () => {
  for (const child of children) {
    try {
      process.kill(child.pid, 'SIGKILL');
    } catch (e) {
      /* already gone */
    }
  }
});

/**
 * spawns `file args` with stdout and stderr appended to the files `out` and `err` (the same
 * file for both when `err` is not given). The child gets `exited`: a promise of {code, signal},
 * resolved after onExit() ran.
 */
function launch(file, args, { out, err, onExit }) {
  const outFd = fs.openSync(out, 'a');
  const errFd = err ? fs.openSync(err, 'a') : outFd;
  const child = spawn(file, args, { stdio: ['ignore', outFd, errFd] });
  fs.closeSync(outFd);
  if (errFd !== outFd) fs.closeSync(errFd);
  if (!child.pid) throw new Error(`could not start ${file}`);
  children.add(child);
  child.exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      children.delete(child);
      if (onExit) onExit();
      resolve({ code, signal });
    });
  });
  child.on('error', () => {});
  return child;
}

function isRunning(child) {
  return child && child.exitCode === null && child.signalCode === null && children.has(child);
}

/** sends `signal` to the child by PID and waits (bounded) until it exited; then SIGKILL */
async function killChild(child, signal, timeoutMs = 5000) {
  if (!isRunning(child)) return;
  process.kill(child.pid, signal);
  const timer = sleep(timeoutMs).then(() => 'timeout');
  if ((await Promise.race([child.exited, timer])) === 'timeout') {
    process.kill(child.pid, 'SIGKILL');
    await child.exited;
  }
}

module.exports = { launch, isRunning, killChild };
