// The console's own script: the picture cropper, an Alpine component (CSP build: no eval).
// The square chosen here is only a suggestion the server applies (Pillow, app/pictures.py
// Crop); without this script the form still uploads the whole picture.
document.addEventListener('alpine:init', () => {
  window.Alpine.data('cropper', () => {
    let image = null // kept out of Alpine's reactive proxies: drawImage needs the real one
    let dragging = false
    return {
      ready: false,
      size: 100, // the square's side, in percent of the picture's shorter side
      x: 50, // its position, in percent of the room left on either side
      y: 50,
      left: '',
      top: '',
      side: '',
      width: '',

      get notReady () { return !this.ready },

      init () {
        for (const name of ['size', 'x', 'y']) this.$watch(name, () => this.draw())
      },

      pick (event) {
        const file = event.target.files[0]
        this.ready = false
        this.left = this.top = this.side = this.width = ''
        if (!file) return
        const loading = new Image()
        loading.onload = () => { image = loading; this.ready = true; this.draw() }
        loading.onerror = () => { image = null }
        loading.src = URL.createObjectURL(file)
      },

      square () {
        const w = image.naturalWidth
        const h = image.naturalHeight
        const side = Math.max(1, Math.round(Math.min(w, h) * this.size / 100))
        return { w, h, side, left: Math.round((w - side) * this.x / 100), top: Math.round((h - side) * this.y / 100) }
      },

      draw () {
        if (!image) return
        const s = this.square()
        Object.assign(this, { left: s.left, top: s.top, side: s.side, width: s.w })
        const canvas = this.$refs.canvas
        const scale = Math.min(1, 480 / Math.max(s.w, s.h))
        canvas.width = Math.round(s.w * scale)
        canvas.height = Math.round(s.h * scale)
        const ctx = canvas.getContext('2d')
        ctx.drawImage(image, 0, 0, canvas.width, canvas.height)
        ctx.fillStyle = 'rgba(0, 0, 0, 0.55)'
        const [l, t, d] = [s.left * scale, s.top * scale, s.side * scale]
        ctx.fillRect(0, 0, canvas.width, t)
        ctx.fillRect(0, t + d, canvas.width, canvas.height - t - d)
        ctx.fillRect(0, t, l, d)
        ctx.fillRect(l + d, t, canvas.width - l - d, d)
        ctx.strokeStyle = '#ffffff'
        ctx.lineWidth = 2
        ctx.strokeRect(l, t, d, d)
        const preview = this.$refs.preview
        preview.getContext('2d').drawImage(image, s.left, s.top, s.side, s.side, 0, 0, preview.width, preview.height)
      },

      // Dragging on the picture moves the square's centre there (the sliders do the same by keyboard).
      grab (event) { dragging = true; event.target.setPointerCapture(event.pointerId); this.drag(event) },
      release () { dragging = false },
      drag (event) {
        if (!dragging || !image) return
        const box = event.target.getBoundingClientRect()
        const s = this.square()
        const cx = (event.clientX - box.left) / box.width * s.w
        const cy = (event.clientY - box.top) / box.height * s.h
        const clamp = (v) => Math.min(100, Math.max(0, Math.round(v)))
        this.x = s.w > s.side ? clamp((cx - s.side / 2) / (s.w - s.side) * 100) : 50
        this.y = s.h > s.side ? clamp((cy - s.side / 2) / (s.h - s.side) * 100) : 50
      }
    }
  })
})
