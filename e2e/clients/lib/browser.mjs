// A headless Chromium for the console's browser tests: Debian's own build
// (run.sh installs it), driven by playwright-core, which downloads no
// browser of its own.

import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

/** The Chromium binary: $CHROMIUM_BIN, or Debian's. */
export function chromiumBin() {
  return process.env.CHROMIUM_BIN || '/usr/bin/chromium';
}

// Any single browser step (a click, a wait for an element or a page) that
// takes longer than this fails with Playwright's own message, well within
// the runner's per-test timeout.
const stepTimeoutMs = 10_000;

/** Launches headless Chromium; the caller must await browser.close(). */
export function launchBrowser() {
  return chromium.launch({
    executablePath: chromiumBin(),
    headless: true,
    timeout: 30_000,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking'],
  });
}

/**
 * A fresh browser context (its own cookies) with short step timeouts. It
 * records what the pages report as errors: uncaught exceptions and console
 * errors, such as a Content-Security-Policy violation.
 */
export async function newContext(browser, options = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ...options });
  context.setDefaultTimeout(stepTimeoutMs);
  context.setDefaultNavigationTimeout(stepTimeoutMs);
  const pageErrors = [];
  context.on('page', (page) => {
    page.on('pageerror', (err) => pageErrors.push(`uncaught: ${err.message}`));
    page.on('console', (msg) => {
      if (msg.type() === 'error') pageErrors.push(`console: ${msg.text()}`);
    });
  });
  return { context, pageErrors };
}

/** The folder for screenshots, e2e/clients/artifacts, created if missing. */
export function artifactsDir() {
  const dir = fileURLToPath(new URL('../artifacts/', import.meta.url));
  mkdirSync(dir, { recursive: true });
  return dir;
}
