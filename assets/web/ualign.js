// The participant page of `ualign serve`: a terminal connected by WebSocket to the
// study's screens. Typed input goes as {"t":"d","d":...}, the window's size as
// {"t":"r","c":columns,"r":rows}; binary messages are terminal output, text messages
// are JSON (a completion link to go to).
"use strict";
(function () {
  const status = document.getElementById("status");
  const term = new Terminal({ cursorBlink: false, fontSize: 15, scrollback: 0, convertEol: false });
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(document.getElementById("terminal"));
  fit.fit();
  term.focus();
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(scheme + "//" + location.host + "/ws" + location.search);
  ws.binaryType = "arraybuffer";
  const send = (m) => { if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(m)); };
  const resize = () => { fit.fit(); send({ t: "r", c: term.cols, r: term.rows }); };
  status.textContent = "Connecting…";
  ws.onopen = () => { status.textContent = "Connected. Your answers are saved as you go."; resize(); };
  ws.onmessage = (e) => {
    if (typeof e.data === "string") {
      const m = JSON.parse(e.data);
      if (m.redirect) {
        status.textContent = "Done. Taking you to the completion page…";
        setTimeout(() => { location.href = m.redirect; }, 3000);
      }
    } else {
      term.write(new Uint8Array(e.data));
    }
  };
  ws.onclose = () => { status.textContent = "Disconnected. Your confirmed answers are saved; reload the page to continue."; };
  // The server takes WebSocket messages of at most 16 KiB: a large paste goes in pieces of
  // at most PIECE code points (6 bytes each at worst once JSON-escaped), and the server
  // drops what its input queue cannot hold, so a huge paste loses its tail, never the
  // connection.
  const PIECE = 2048;
  term.onData((d) => {
    const points = Array.from(d);
    for (let i = 0; i < points.length; i += PIECE) send({ t: "d", d: points.slice(i, i + PIECE).join("") });
  });
  window.addEventListener("resize", resize);
})();
