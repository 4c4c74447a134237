"""The short autoencoder runs that chose the default's latent space (results/autoencoder_sweep/*.json).

    python experiments/autoencoder_sweep.py --name r3f2 --widths 32,64 --ch 8 --bs 4 --crop 64 --lr 2e-3 --zero 1 \
        --logvar -8 --steps 250 --eval-every 125 [--data ../shared/data] [--out results/autoencoder_sweep]

One thread, fp32. Tuned on held-back training photos only: every 10th photo of train/ (its 256 px centre crop) is
left out of training and measured, against bicubic ×2 of the same crops. The rest of train/ and train_hr/ train.
Its settings became options of `fmboost train-autoencoder` (init_logvar, zero_init_residual, ...).
"""
import argparse, json, math, os, random, time, sys
import numpy as np, torch, torch.nn.functional as F
from PIL import Image
from diffusers import AutoencoderKL
from fmboost.autoencoders.vae import small_autoencoder_config
from fmboost.data.images import list_images

p = argparse.ArgumentParser()
p.add_argument("--name"); p.add_argument("--widths", default="32,64,128"); p.add_argument("--ch", type=int, default=16)
p.add_argument("--steps", type=int, default=600); p.add_argument("--lr", type=float, default=5e-4)
p.add_argument("--bs", type=int, default=8); p.add_argument("--crop", type=int, default=96)
p.add_argument("--grad", type=float, default=0.0); p.add_argument("--coloraug", type=float, default=0.0)
p.add_argument("--layers", type=int, default=1); p.add_argument("--zero", type=int, default=0); p.add_argument("--logvar", type=float, default=0.0); p.add_argument("--mse", type=float, default=0.0); p.add_argument("--eval-every", type=int, default=200)
p.add_argument("--data", default="../shared/data"); p.add_argument("--out", default="results/autoencoder_sweep")
a = p.parse_args(); os.makedirs(a.out, exist_ok=True)
torch.set_num_threads(1); torch.manual_seed(0); rng = random.Random(0)
files = list_images(f"{a.data}/train")
held = [f for i, f in enumerate(files) if i % 10 == 0]
train_f = [f for i, f in enumerate(files) if i % 10 != 0] + list_images(f"{a.data}/train_hr")
def load(f, maxs=1024):
    im = Image.open(f).convert("RGB")
    if max(im.size) > maxs:
        s = maxs / max(im.size); im = im.resize((round(im.width*s), round(im.height*s)), Image.LANCZOS)
    return torch.from_numpy(np.asarray(im).copy()).permute(2,0,1)
photos = [load(f) for f in train_f]
def crops(n, size):
    out = []
    for _ in range(n):
        ph = photos[rng.randrange(len(photos))]
        i, j = rng.randrange(ph.shape[1]-size+1), rng.randrange(ph.shape[2]-size+1)
        c = ph[:, i:i+size, j:j+size].float()/127.5-1
        if rng.random() < .5: c = c.flip(2)
        if a.coloraug and rng.random() < a.coloraug:
            # hue rotation in YIQ-ish: rotate chroma around the grey axis
            th = rng.uniform(-math.pi, math.pi); s = rng.uniform(0.7, 1.4)
            m = c.mean(0, keepdim=True); ch = c - m
            k = torch.tensor([1,1,1.])/math.sqrt(3); K = torch.tensor([[0,-k[2],k[1]],[k[2],0,-k[0]],[-k[1],k[0],0]])
            R = torch.eye(3)+math.sin(th)*K+(1-math.cos(th))*K@K
            c = (m + s*torch.einsum("ij,jhw->ihw", R, ch)).clamp(-1,1)
        out.append(c)
    return torch.stack(out)
ev = []
for f in held:
    im = Image.open(f).convert("RGB"); w, h = im.size
    im = im.crop(((w-256)//2, (h-256)//2, (w-256)//2+256, (h-256)//2+256))
    ev.append(im)
def psnr(x, y): return float(10*torch.log10(4/((x-y)**2).mean()))
def toT(im): return torch.from_numpy(np.asarray(im).copy()).permute(2,0,1).float()/127.5-1
bic = np.mean([psnr(toT(im.resize((128,128), Image.BICUBIC).resize((256,256), Image.BICUBIC)), toT(im)) for im in ev])
cfg = small_autoencoder_config([int(w) for w in a.widths.split(",")], a.ch); cfg["layers_per_block"] = a.layers
vae = AutoencoderKL(**cfg)
if a.logvar:
    with torch.no_grad():
        vae.quant_conv.weight[a.ch:] = 0; vae.quant_conv.bias[a.ch:] = a.logvar
if a.zero:
    from diffusers.models.resnet import ResnetBlock2D
    for m in vae.modules():
        if isinstance(m, ResnetBlock2D): torch.nn.init.zeros_(m.conv2.weight); torch.nn.init.zeros_(m.conv2.bias)
npar = sum(p.numel() for p in vae.parameters())
opt = torch.optim.AdamW(vae.parameters(), lr=a.lr, betas=(0.9, 0.99), weight_decay=0)
@torch.no_grad()
def evaluate():
    vae.eval(); vals = []
    for im in ev:
        x = toT(im)[None]; r = vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1,1)
        r = ((r+1)*127.5).round()/127.5-1
        vals.append(psnr(r[0], x[0]))
    vae.train(); return float(np.mean(vals))
t0 = time.time(); log = {"name": a.name, "args": vars(a), "params": npar, "bicubic": bic, "evals": []}
for step in range(1, a.steps+1):
    lr = a.lr*min(1, step/100)
    for g in opt.param_groups: g["lr"] = lr
    x = crops(a.bs, a.crop)
    post = vae.encode(x).latent_dist; r = vae.decode(post.sample()).sample
    loss = (r-x).abs().mean() + 1e-6*post.kl().mean()/x[0].numel() + a.mse*((r-x)**2).mean()
    if a.grad:
        gx = lambda t: (t[..., 1:] - t[..., :-1]); gy = lambda t: (t[..., 1:, :] - t[..., :-1, :])
        loss = loss + a.grad*((gx(r)-gx(x)).abs().mean() + (gy(r)-gy(x)).abs().mean())
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0); opt.step()
    if step % a.eval_every == 0:
        e = evaluate(); log["evals"].append([step, time.time()-t0, e]); print(a.name, step, round(time.time()-t0), round(e,2), "bicubic", round(bic,2), flush=True)
        json.dump(log, open(f"{a.out}/{a.name}.json", "w"))
