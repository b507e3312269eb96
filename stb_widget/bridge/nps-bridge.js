/*
 * nps-bridge.js: turns an HTML5 player's events into the box agent's player events
 * (iptv-nps, docs/event-feed.md) and posts them to the agent's local endpoint
 * (player.source = "http", POST http://127.0.0.1:<player.http_port>/events).
 *
 * Plain ES2017, no dependencies, no build step: include it with a <script> tag.
 *
 *   var nps = NpsBridge.attach(video, {
 *     endpoint: "http://127.0.0.1:8497/events",   // the default
 *     shaka: player,        // or dashjs: mediaPlayer, or hls: hlsInstance (all optional)
 *   });
 *   nps.channel("NPO1", "live");  // before loading a stream: names the next session
 *   ...
 *   nps.stop();                   // the viewer left playback (ended is automatic)
 *   nps.detach();
 *
 * What each event comes from:
 *   play           Shaka "loading" (the load() call), dash.js "manifestLoadingStarted",
 *                  hls.js MANIFEST_LOADING; otherwise the <video>'s "loadstart"
 *                  of a new source; or nps.play(channel, contentType) by the page
 *   first_frame    the first painted frame (requestVideoFrameCallback), else "playing"
 *   bitrate        Shaka "mediaqualitychanged" (the quality at the playhead: what is on
 *                  screen), where the page configured Shaka with
 *                  streaming.observeQualityChanges = true; else the active variant at
 *                  Shaka's "loaded", "adaptation", "variantchanged" (what is fetched,
 *                  seconds ahead of the screen); dash.js "qualityChangeRendered";
 *                  hls.js LEVEL_SWITCHED; plain <video>: "resize" (kbps null, height)
 *   stall_start/_end  Shaka "buffering"; otherwise "waiting" / "playing". Never while
 *                  a seek loads (until playback moves on from where it landed), and
 *                  never before the first frame (that is startup)
 *   pause/resume   the <video>'s "pause" / "play" after the first frame (not at its end)
 *   seek           the <video>'s "seeking" after the first frame
 *   error          a fatal Shaka / dash.js / hls.js error (for Shaka also a load() that
 *                  fails: the bridge wraps player.load), or the <video>'s "error"
 *   stop           the <video>'s "ended", Shaka "unloading", "emptied", pagehide,
 *                  nps.stop()
 *   dropped_frames getVideoPlaybackQuality().droppedVideoFrames: at the first frame,
 *                  every droppedEveryMs while it changes, and before the session ends
 *
 * "at" is performance.now() / 1000 when the event happened, so the agent measures from
 * the player's own times whatever the posting delay; lines are posted in small
 * batches (flushMs) as text/plain, which a browser sends without a CORS preflight.
 * A 400 answer means some lines were bad (logged to the console), and is never resent;
 * a network failure keeps the lines (at most maxQueue) for the next try.
 */
(function (root) {
  "use strict";

  var DEFAULTS = {
    endpoint: "http://127.0.0.1:8497/events",
    flushMs: 250,
    droppedEveryMs: 10000,
    maxQueue: 1000,
    maxBodyBytes: 60 * 1024,   // under the agent's 64 KiB limit
    shaka: null,
    dashjs: null,
    hls: null,
    log: function (msg) { if (root.console) { root.console.warn("nps-bridge: " + msg); } },
  };

  function now() { return root.performance.now() / 1000; }

  function attach(video, options) {
    var opt = {};
    var k;
    for (k in DEFAULTS) { opt[k] = DEFAULTS[k]; }
    for (k in options || {}) { opt[k] = options[k]; }

    var queue = [];
    var timer = null;
    var sending = false;
    var open = false;          // a session is open (play sent, no stop/error yet)
    var framed = false;        // its first frame was seen
    var stalled = false;
    var paused = false;        // a pause was sent and no resume yet
    var seekFrom = null;       // where the last seek landed, until playback moved on
    var lastKbps, lastHeight, lastDropped;
    var nextChannel = null, nextType = null;
    var lastSrc = null;
    var droppedTimer = null;
    var off = [];              // functions removing every listener

    function emit(event, fields, at) {
      var line = { event: event, at: at === undefined ? now() : at };
      for (var f in fields || {}) {
        if (fields[f] !== undefined && fields[f] !== null) { line[f] = fields[f]; }
      }
      queue.push(JSON.stringify(line));
      if (queue.length > opt.maxQueue) { queue.splice(0, queue.length - opt.maxQueue); }
      if (event === "stop" || event === "error") { flush(); } else { schedule(); }
    }

    function schedule() {
      if (timer === null) { timer = root.setTimeout(flush, opt.flushMs); }
    }

    function takeBatch() {
      var size = 0, n = 0;
      while (n < queue.length && size + queue[n].length + 1 <= opt.maxBodyBytes) {
        size += queue[n].length + 1;
        n += 1;
      }
      return queue.splice(0, Math.max(n, 1));
    }

    function flush() {
      if (timer !== null) { root.clearTimeout(timer); timer = null; }
      if (sending || queue.length === 0) { return; }
      var batch = takeBatch();
      sending = true;
      root.fetch(opt.endpoint, {
        method: "POST", body: batch.join("\n") + "\n", keepalive: true,
        headers: { "Content-Type": "text/plain" },
      }).then(function (resp) {
        sending = false;
        if (resp.status === 400 || resp.status === 413) {
          resp.json().then(function (doc) { opt.log(doc.error); }, function () {});
        } else if (!resp.ok) {
          opt.log("agent answered " + resp.status);
        }
        if (queue.length) { schedule(); }
      }, function (err) {
        // The agent is not there (restarting?): keep the lines for the next try.
        sending = false;
        queue = batch.concat(queue).slice(-opt.maxQueue);
        opt.log("cannot reach " + opt.endpoint + ": " + err);
        timer = root.setTimeout(flush, Math.max(opt.flushMs, 2000));
      });
    }

    function beacon() {
      // The page is going away: fetch may not finish, sendBeacon does.
      if (queue.length && root.navigator && root.navigator.sendBeacon) {
        root.navigator.sendBeacon(opt.endpoint, queue.join("\n") + "\n");
        queue = [];
      } else {
        flush();
      }
    }

    function listen(target, type, fn, how) {
      if (!target || !target.addEventListener) { return; }
      target.addEventListener(type, fn, how);
      off.push(function () { target.removeEventListener(type, fn, how); });
    }

    function dropped() {
      var q = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : null;
      return q ? q.droppedVideoFrames : null;
    }

    function sendDropped(force) {
      var count = dropped();
      if (count === null || (!force && count === lastDropped)) { return; }
      lastDropped = count;
      emit("dropped_frames", { count: count });
    }

    function play(channel, contentType) {
      if (channel !== undefined) { nextChannel = channel; nextType = contentType; }
      end(null);
      open = true;
      framed = false;
      stalled = false;
      paused = false;
      seekFrom = null;
      lastKbps = undefined;
      lastHeight = undefined;
      lastDropped = undefined;
      emit("play", { channel: nextChannel, content_type: nextType });
      nextChannel = null;
      nextType = null;
      watchFirstFrame();
    }

    function watchFirstFrame() {
      if (video.requestVideoFrameCallback) {
        video.requestVideoFrameCallback(function (t) {
          // t: when the frame was presented, on performance.now()'s clock.
          firstFrame(t / 1000);
        });
      }
    }

    function firstFrame(at) {
      if (!open || framed) { return; }
      framed = true;
      emit("first_frame", {}, at);
      sendDropped(true);
      if (droppedTimer === null && opt.droppedEveryMs > 0) {
        droppedTimer = root.setInterval(function () { sendDropped(false); }, opt.droppedEveryMs);
      }
    }

    // Ends the open session: with "stop" (reason null) or "error" (reason: its message).
    function end(errorMessage) {
      if (!open) { return; }
      if (stalled) { emit("stall_end"); stalled = false; }
      if (framed) { sendDropped(false); }
      open = false;
      if (droppedTimer !== null) { root.clearInterval(droppedTimer); droppedTimer = null; }
      if (errorMessage === null) { emit("stop"); } else { emit("error", { message: errorMessage }); }
    }

    function bitrate(kbps, height) {
      if (!open) { return; }
      kbps = kbps === null || kbps === undefined ? null : Math.round(kbps);
      height = height || undefined;
      if (kbps === lastKbps && height === lastHeight) { return; }
      lastKbps = kbps;
      lastHeight = height;
      emit("bitrate", { kbps: kbps, height: height });
    }

    function stall(on) {
      if (!open || !framed || on === stalled) { return; }
      // A seek's own loading is no stall: from "seeking" until playback has moved on
      // from where the seek landed ("waiting" may come just after "seeked").
      if (on && (video.seeking || seekFrom !== null)) { return; }
      stalled = on;
      emit(on ? "stall_start" : "stall_end");
    }

    // --- the <video> element ---
    var lib = opt.shaka || opt.dashjs || opt.hls;
    listen(video, "loadstart", function () {
      // With a library the source is a MediaSource blob: the library's own load is the
      // play, and it came earlier.
      if (lib) { return; }
      var src = video.currentSrc || video.src;
      if (!open || src !== lastSrc) { lastSrc = src; play(); }
    });
    listen(video, "playing", function () {
      if (!open) { return; }
      if (!framed && !video.requestVideoFrameCallback) { firstFrame(now()); }
      if (!opt.shaka) { stall(false); }
    });
    listen(video, "waiting", function () { if (!opt.shaka) { stall(true); } });
    listen(video, "pause", function () {
      if (open && framed && !paused && !video.ended) { paused = true; emit("pause"); }
    });
    listen(video, "play", function () {
      // "play" fires when paused becomes false; only after a pause we sent is it a
      // resume (a player calling play() once the first frame is up is no resume).
      if (open && paused) { paused = false; emit("resume"); }
    });
    listen(video, "seeked", function () { if (seekFrom !== null) { seekFrom = video.currentTime; } });
    listen(video, "timeupdate", function () {
      if (seekFrom !== null && !video.seeking && video.currentTime > seekFrom + 0.1) {
        seekFrom = null;
      }
    });
    listen(video, "seeking", function () {
      seekFrom = video.currentTime;
      if (open && framed) {
        if (stalled) { emit("stall_end"); stalled = false; }
        emit("seek");
      }
    });
    listen(video, "resize", function () {
      if (!lib && video.videoHeight) { bitrate(null, video.videoHeight); }
    });
    listen(video, "ended", function () { end(null); });
    listen(video, "emptied", function () { if (!lib) { end(null); } });
    listen(video, "error", function () {
      var e = video.error;
      if (!lib && open) { end("media error " + (e ? e.code + ": " + e.message : "unknown")); }
    });
    listen(root, "pagehide", function () { end(null); beacon(); });

    // --- Shaka Player ---
    if (opt.shaka) {
      var sp = opt.shaka;
      // A load() that fails is no "error" event: Shaka unloads, then load() rejects.
      // So load() is wrapped: its rejection ends the session it opened, as an error
      // (or a stop where a new load or unload() interrupted it: code 7000), and an
      // "unloading" during that load waits for it.
      var loadSeq = 0, sessionLoad = 0, loading = false;
      var load = sp.load;
      if (typeof load === "function") {
        sp.load = function () {
          var mine = ++loadSeq;
          var p = load.apply(sp, arguments);
          p.then(function () {
            if (sessionLoad === mine) { loading = false; }
          }, function (e) {
            if (sessionLoad !== mine) { return; }
            loading = false;
            if (e && e.code === 7000) { end(null); } else { end("shaka error " + (e && e.code)); }
          });
          return p;
        };
        off.push(function () { sp.load = load; });
      }
      listen(sp, "loading", function () { sessionLoad = loadSeq; loading = true; play(); });
      listen(sp, "unloading", function () { if (!loading) { end(null); } });
      listen(sp, "buffering", function (ev) { stall(!!ev.buffering); });
      // With streaming.observeQualityChanges on, Shaka says which rendition reaches the
      // screen; without it, only which one it chose to fetch (a few seconds earlier).
      var onScreen = false;
      listen(sp, "mediaqualitychanged", function (ev) {
        var q = ev.mediaQuality;
        onScreen = true;
        if (q && q.contentType === "video") { bitrate(q.bandwidth / 1000, q.height); }
      });
      var chosen = function () {
        if (onScreen || !sp.getVariantTracks) { return; }
        var tracks = sp.getVariantTracks();
        for (var i = 0; i < tracks.length; i++) {
          if (tracks[i].active) {
            bitrate((tracks[i].videoBandwidth || tracks[i].bandwidth) / 1000, tracks[i].height);
          }
        }
      };
      listen(sp, "adaptation", chosen);
      listen(sp, "variantchanged", chosen);
      listen(sp, "loaded", chosen);
      listen(sp, "error", function (ev) {
        var d = ev.detail || {};
        if (d.severity === 2) { end("shaka error " + d.code); }   // 2 = CRITICAL
      });
    }

    // --- dash.js (v4 and v5) ---
    if (opt.dashjs) {
      var dp = opt.dashjs;
      var on = function (type, fn) {
        dp.on(type, fn);
        off.push(function () { dp.off(type, fn); });
      };
      // The load request opens the session; playbackInitialized (later) only where the
      // page attached the bridge after it. Stalls come from the <video>, as for hls.js.
      on("manifestLoadingStarted", function () { play(); });
      on("playbackInitialized", function () { if (!open) { play(); } });
      on("qualityChangeRendered", function (ev) {
        if (ev.mediaType !== "video") { return; }
        var r = ev.newRepresentation;   // v5
        if (!r && dp.getBitrateInfoListFor) {   // v4
          r = dp.getBitrateInfoListFor("video")[ev.newQuality];
          if (r) { r = { bandwidth: r.bitrate, height: r.height }; }
        }
        if (r) { bitrate(r.bandwidth / 1000, r.height); }
      });
      on("error", function (ev) {
        var e = ev && ev.error;
        end("dash.js error " + (e ? (e.code || "") + " " + (e.message || "") : ""));
      });
    }

    // --- hls.js ---
    if (opt.hls) {
      var hp = opt.hls;
      var E = (root.Hls && root.Hls.Events) || {};
      var onh = function (type, fn) {
        if (!type) { return; }
        hp.on(type, fn);
        off.push(function () { hp.off(type, fn); });
      };
      onh(E.MANIFEST_LOADING, function () { play(); });
      onh(E.LEVEL_SWITCHED, function (_type, data) {
        var level = hp.levels && hp.levels[data.level];
        if (level) { bitrate(level.bitrate / 1000, level.height); }
      });
      onh(E.ERROR, function (_type, data) {
        if (data && data.fatal) { end("hls.js error " + data.type + " " + data.details); }
      });
    }

    return {
      /** Name the next session (called before loading its stream). */
      channel: function (channel, contentType) { nextChannel = channel; nextType = contentType; },
      /** Open a session now (where the page knows better than the events). */
      play: function (channel, contentType) { play(channel, contentType); },
      /** The viewer left playback: the session ends normally. */
      stop: function () { end(null); flush(); },
      /** Post what is queued now. */
      flush: flush,
      /** Remove every listener (the open session is stopped first). */
      detach: function () {
        end(null);
        flush();
        while (off.length) { off.pop()(); }
      },
    };
  }

  root.NpsBridge = { attach: attach, version: "1" };
})(typeof window !== "undefined" ? window : this);
