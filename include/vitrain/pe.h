/*
 * pe.h - positional encodings: what an encoding does when the resolution
 * changes (DESIGN §4). The additive absolute encoding's forward/backward
 * are ops (ops.h: pos_embed_forward/backward); the rotary encodings plug
 * into attention through a QkRotation (attention.h).
 */
#ifndef VITRAIN_PE_H
#define VITRAIN_PE_H

/*
 * Resamples the patch part of a learned absolute position embedding from a
 * gh0 x gw0 grid to gh x gw, bicubic, like timm's resample_abs_pos_embed:
 * torch.nn.functional.interpolate(mode='bicubic', antialias=True,
 * align_corners=False), i.e. the separable cubic kernel with a = -0.5,
 * widened by the scale when shrinking, weights normalised over the pixels
 * inside the grid (DESIGN §4.1). The CLS slot is not part of src or dst.
 */
void pos_embed_resample(float *dst /* (gh*gw, D) */, int gh, int gw,
                        const float *src /* (gh0*gw0, D) */, int gh0, int gw0, int D);

#endif
