// The audio thread of a browser call ("Try a call", try.js): the microphone becomes phone-line
// audio and the bot's phone audio becomes sound.
//
// In: the microphone at the context's rate (usually 48 kHz) is low-passed (a windowed-sinc FIR
// under the line's Nyquist) and resampled to the line's rate: 8 kHz mu-law, as a phone sends it,
// or 16 kHz 16-bit PCM when the designer asks for wideband. 20 ms frames go to the page, which
// sends them to the server as Twilio `media` messages.
// Out: the server's 8 kHz audio (16 kHz when wideband; decoded by the page) is queued and played
// at the context's rate, behind a jitter buffer as a phone network plays it: 60 ms to begin with, as the phone
// simulator's (ivr/tools/simulate.py), growing by 40 ms after each underrun up to 200 ms, as
// WebRTC's adapts, since a browser's audio goes through a busier machine than a phone's. After
// the queue has run dry, playing starts again once that much is queued or the audio has waited
// that long (the end of a prompt). `clear` (barge-in) drops the queue. The
// queue running dry in the middle of the bot's speech is an underrun: counted, with the silence it
// caused, for the page and the benchmark; running dry in the voice's own pause (between sentences)
// only makes that pause longer and is counted apart, as a late pause, as the simulator does.

const FRAME_S = 0.02;
const TAPS = 255; // at 48 kHz a transition of about 1 kHz: the line keeps 300-3400 Hz and folds nothing back
const UNDERRUN_GAP_S = 0.5; // audio again within this after running dry: the bot was mid-speech
const JITTER_S = 0.06, JITTER_STEP_S = 0.04, JITTER_MAX_S = 0.2;
const SPEECH_RMS = 10 ** (-45 / 20); // the last 20 ms played louder than this: the voice was speaking

function lowPass(cutoff, taps) { // cutoff as a fraction of the input rate
  const h = new Float32Array(taps);
  const mid = (taps - 1) / 2;
  let sum = 0;
  for (let i = 0; i < taps; i++) {
    const x = i - mid;
    const sinc = x === 0 ? 2 * cutoff : Math.sin(2 * Math.PI * cutoff * x) / (Math.PI * x);
    const blackman = 0.42 - 0.5 * Math.cos((2 * Math.PI * i) / (taps - 1)) + 0.08 * Math.cos((4 * Math.PI * i) / (taps - 1));
    h[i] = sinc * blackman;
    sum += h[i];
  }
  for (let i = 0; i < taps; i++) h[i] /= sum;
  return h;
}

function muLaw(sample) { // float in [-1, 1] -> G.711 mu-law byte
  let pcm = Math.max(-32768, Math.min(32767, Math.round(sample * 32768)));
  const sign = pcm < 0 ? 0x80 : 0;
  if (pcm < 0) pcm = -pcm;
  pcm = Math.min(pcm, 32635) + 0x84;
  let exponent = 7;
  for (let mask = 0x4000; (pcm & mask) === 0 && exponent > 0; mask >>= 1) exponent--;
  const mantissa = (pcm >> (exponent + 3)) & 0x0f;
  return ~(sign | (exponent << 4) | mantissa) & 0xff;
}

class LineProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = options.processorOptions;
    this.wideband = !!o.wideband;
    this.lineRate = this.wideband ? 16000 : 8000;
    this.step = sampleRate / this.lineRate; // input samples per line sample
    // Under the line's Nyquist, and under a phone's 3.4 kHz band when narrowband.
    this.h = lowPass((this.wideband ? 7000 : 3400) / sampleRate, TAPS);
    this.half = (TAPS - 1) / 2;
    this.input = new Float32Array(0);
    this.pos = this.half; // next line sample, in input samples from the start of `input`
    this.frameLen = Math.round(this.lineRate * FRAME_S);
    this.frame = this.wideband ? new Int16Array(this.frameLen) : new Uint8Array(this.frameLen);
    this.filled = 0;
    this.playRate = o.playRate || 8000;
    this.queue = []; // Float32Arrays at playRate
    this.head = 0; // position (fractional) in queue[0]
    this.dryAt = null;
    this.waitingSince = null; // buffering: when the first sample after a dry spell came
    this.jitter = JITTER_S;
    this.stats = { underruns: 0, starvedS: 0, latePauses: 0, playedS: 0, clears: 0, jitterMs: 1000 * JITTER_S };
    this.recent = new Float32Array(Math.round(sampleRate * 0.02)); // the last 20 ms played
    this.recentAt = 0;
    this.dryLoud = false;
    this.lastReport = 0;
    this.port.onmessage = (e) => this.onMessage(e.data);
  }

  onMessage(msg) {
    if (msg.type === "play") {
      if (this.dryAt !== null && currentTime - this.dryAt < UNDERRUN_GAP_S) {
        if (this.dryLoud) {
          this.stats.underruns += 1;
          this.stats.starvedS += currentTime - this.dryAt;
          this.jitter = Math.min(JITTER_MAX_S, this.jitter + JITTER_STEP_S);
          this.stats.jitterMs = Math.round(1000 * this.jitter);
        } else {
          this.stats.latePauses += 1;
        }
      }
      this.dryAt = null;
      if (!this.queue.length) this.waitingSince = currentTime;
      this.queue.push(msg.samples);
    } else if (msg.type === "clear") {
      this.queue = [];
      this.head = 0;
      this.dryAt = null;
      this.waitingSince = null;
      this.stats.clears += 1;
    }
  }

  capture(block) {
    const joined = new Float32Array(this.input.length + block.length);
    joined.set(this.input);
    joined.set(block, this.input.length);
    this.input = joined;
    const h = this.h;
    while (Math.floor(this.pos) + 1 + this.half < this.input.length) {
      const i = Math.floor(this.pos);
      const frac = this.pos - i;
      let a = 0, b = 0;
      for (let k = 0; k < TAPS; k++) {
        const x = this.input[i - this.half + k];
        a += h[k] * x;
        b += h[k] * this.input[i + 1 - this.half + k];
      }
      const s = a + (b - a) * frac;
      this.frame[this.filled++] = this.wideband ? Math.max(-32768, Math.min(32767, Math.round(s * 32768))) : muLaw(s);
      if (this.filled === this.frameLen) {
        const out = this.frame;
        this.port.postMessage({ type: "frame", data: out.buffer }, [out.buffer]);
        this.frame = this.wideband ? new Int16Array(this.frameLen) : new Uint8Array(this.frameLen);
        this.filled = 0;
      }
      this.pos += this.step;
    }
    const drop = Math.max(0, Math.floor(this.pos) - this.half);
    this.input = this.input.slice(drop);
    this.pos -= drop;
  }

  queued() {
    let n = -this.head;
    for (const chunk of this.queue) n += chunk.length;
    return n / this.playRate;
  }

  play(out) {
    const ratio = this.playRate / sampleRate;
    let played = 0;
    if (this.waitingSince !== null) {
      if (this.queued() < this.jitter && currentTime - this.waitingSince < this.jitter) {
        out.fill(0);
        return;
      }
      this.waitingSince = null;
    }
    for (let n = 0; n < out.length; n++) {
      if (!this.queue.length) {
        out[n] = 0;
        continue;
      }
      const cur = this.queue[0];
      const i = Math.floor(this.head);
      const next = i + 1 < cur.length ? cur[i + 1] : (this.queue[1] ? this.queue[1][0] : cur[i]);
      out[n] = cur[i] + (next - cur[i]) * (this.head - i);
      this.recent[this.recentAt] = out[n];
      this.recentAt = (this.recentAt + 1) % this.recent.length;
      played += 1;
      this.head += ratio;
      while (this.queue.length && this.head >= this.queue[0].length) {
        this.head -= this.queue[0].length;
        this.queue.shift();
      }
      if (!this.queue.length) {
        this.head = 0;
        this.dryAt = currentTime + n / sampleRate;
        let sum = 0;
        for (const v of this.recent) sum += v * v;
        this.dryLoud = Math.sqrt(sum / this.recent.length) > SPEECH_RMS;
        for (let m = n + 1; m < out.length; m++) out[m] = 0;
        break;
      }
    }
    this.stats.playedS += played / sampleRate;
  }

  process(inputs, outputs) {
    const mic = inputs[0] && inputs[0][0];
    if (mic) this.capture(mic);
    const out = outputs[0];
    this.play(out[0]);
    for (let c = 1; c < out.length; c++) out[c].set(out[0]);
    if (currentTime - this.lastReport > 0.5) {
      this.lastReport = currentTime;
      this.port.postMessage({ type: "stats", stats: this.stats });
    }
    return true;
  }
}

registerProcessor("ivr-line", LineProcessor);
