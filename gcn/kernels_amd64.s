//go:build !purego

#include "textflag.h"

// func sumRows16(acc, self, h *float32, src *int32, n, rowBytes int, bias *float32, relu int, p float32)
// acc[0:16] = act(p * (self[0:16] + sum of the 16 floats at h + s*rowBytes
// for s in src[0:n]) + bias[0:16]), the sum in src's order, act ReLU when
// relu != 0, else none.
TEXT ·sumRows16(SB), NOSPLIT, $0-68
	MOVQ acc+0(FP), DI
	MOVQ self+8(FP), SI
	MOVQ h+16(FP), DX
	MOVQ src+24(FP), BX
	MOVQ n+32(FP), CX
	MOVQ rowBytes+40(FP), R8
	MOVUPS 0(SI), X0
	MOVUPS 16(SI), X1
	MOVUPS 32(SI), X2
	MOVUPS 48(SI), X3
	TESTQ CX, CX
	JZ fin16
loop16:
	MOVLQSX (BX), AX
	IMULQ R8, AX
	MOVUPS 0(DX)(AX*1), X4
	MOVUPS 16(DX)(AX*1), X5
	MOVUPS 32(DX)(AX*1), X6
	MOVUPS 48(DX)(AX*1), X7
	ADDPS X4, X0
	ADDPS X5, X1
	ADDPS X6, X2
	ADDPS X7, X3
	ADDQ $4, BX
	DECQ CX
	JNZ loop16
fin16:
	MOVSS p+64(FP), X4
	SHUFPS $0, X4, X4
	MULPS X4, X0
	MULPS X4, X1
	MULPS X4, X2
	MULPS X4, X3
	MOVQ bias+48(FP), SI
	MOVUPS 0(SI), X5
	ADDPS X5, X0
	MOVUPS 16(SI), X5
	ADDPS X5, X1
	MOVUPS 32(SI), X5
	ADDPS X5, X2
	MOVUPS 48(SI), X5
	ADDPS X5, X3
	MOVQ relu+56(FP), AX
	TESTQ AX, AX
	JZ fin16store
	// v < 0 -> +0; -0 and NaN stay (as Go's "if v < 0 { v = 0 }"):
	// MAXPS keeps its destination (0) only where 0 > v.
	XORPS X9, X9
	MAXPS X0, X9
	MOVAPS X9, X0
	XORPS X9, X9
	MAXPS X1, X9
	MOVAPS X9, X1
	XORPS X9, X9
	MAXPS X2, X9
	MOVAPS X9, X2
	XORPS X9, X9
	MAXPS X3, X9
	MOVAPS X9, X3
fin16store:
	MOVUPS X0, 0(DI)
	MOVUPS X1, 16(DI)
	MOVUPS X2, 32(DI)
	MOVUPS X3, 48(DI)
	RET

// func sumRows8(acc, self, h *float32, src *int32, n, rowBytes int, bias *float32, relu int, p float32)
// sumRows16 for 8 floats.
TEXT ·sumRows8(SB), NOSPLIT, $0-68
	MOVQ acc+0(FP), DI
	MOVQ self+8(FP), SI
	MOVQ h+16(FP), DX
	MOVQ src+24(FP), BX
	MOVQ n+32(FP), CX
	MOVQ rowBytes+40(FP), R8
	MOVUPS 0(SI), X0
	MOVUPS 16(SI), X1
	TESTQ CX, CX
	JZ fin8
loop8:
	MOVLQSX (BX), AX
	IMULQ R8, AX
	MOVUPS 0(DX)(AX*1), X4
	MOVUPS 16(DX)(AX*1), X5
	ADDPS X4, X0
	ADDPS X5, X1
	ADDQ $4, BX
	DECQ CX
	JNZ loop8
fin8:
	MOVSS p+64(FP), X4
	SHUFPS $0, X4, X4
	MULPS X4, X0
	MULPS X4, X1
	MOVQ bias+48(FP), SI
	MOVUPS 0(SI), X5
	ADDPS X5, X0
	MOVUPS 16(SI), X5
	ADDPS X5, X1
	MOVQ relu+56(FP), AX
	TESTQ AX, AX
	JZ fin8store
	// v < 0 -> +0; -0 and NaN stay (as Go's "if v < 0 { v = 0 }"):
	// MAXPS keeps its destination (0) only where 0 > v.
	XORPS X9, X9
	MAXPS X0, X9
	MOVAPS X9, X0
	XORPS X9, X9
	MAXPS X1, X9
	MOVAPS X9, X1
fin8store:
	MOVUPS X0, 0(DI)
	MOVUPS X1, 16(DI)
	RET

// func matRow16(dst, in, w *float32, k, wRowBytes int, scale float32)
// dst[0:16] = scale * sum over i < k, in[i] != 0, of in[i] times the 16
// floats at w + i*wRowBytes, k > 0, added in i's order. A NaN input is not
// skipped (NaN != 0).
TEXT ·matRow16(SB), NOSPLIT, $0-44
	MOVQ dst+0(FP), DI
	MOVQ in+8(FP), SI
	MOVQ w+16(FP), DX
	MOVQ k+24(FP), CX
	MOVQ wRowBytes+32(FP), R8
	XORPS X0, X0
	XORPS X1, X1
	XORPS X2, X2
	XORPS X3, X3
	XORPS X8, X8
mloop16:
	MOVSS (SI), X4
	UCOMISS X8, X4
	JNE mnonzero16
	JPS mnonzero16
	JMP mnext16
mnonzero16:
	SHUFPS $0, X4, X4
	MOVUPS 0(DX), X5
	MOVUPS 16(DX), X6
	MOVUPS 32(DX), X7
	MOVUPS 48(DX), X9
	MULPS X4, X5
	MULPS X4, X6
	MULPS X4, X7
	MULPS X4, X9
	ADDPS X5, X0
	ADDPS X6, X1
	ADDPS X7, X2
	ADDPS X9, X3
mnext16:
	ADDQ $4, SI
	ADDQ R8, DX
	DECQ CX
	JNZ mloop16
	MOVSS scale+40(FP), X4
	SHUFPS $0, X4, X4
	MULPS X4, X0
	MULPS X4, X1
	MULPS X4, X2
	MULPS X4, X3
	MOVUPS X0, 0(DI)
	MOVUPS X1, 16(DI)
	MOVUPS X2, 32(DI)
	MOVUPS X3, 48(DI)
	RET

// func matRow8(dst, in, w *float32, k, wRowBytes int, scale float32)
// matRow16 for 8 floats.
TEXT ·matRow8(SB), NOSPLIT, $0-44
	MOVQ dst+0(FP), DI
	MOVQ in+8(FP), SI
	MOVQ w+16(FP), DX
	MOVQ k+24(FP), CX
	MOVQ wRowBytes+32(FP), R8
	XORPS X0, X0
	XORPS X1, X1
	XORPS X8, X8
mloop8:
	MOVSS (SI), X4
	UCOMISS X8, X4
	JNE mnonzero8
	JPS mnonzero8
	JMP mnext8
mnonzero8:
	SHUFPS $0, X4, X4
	MOVUPS 0(DX), X5
	MOVUPS 16(DX), X6
	MULPS X4, X5
	MULPS X4, X6
	ADDPS X5, X0
	ADDPS X6, X1
mnext8:
	ADDQ $4, SI
	ADDQ R8, DX
	DECQ CX
	JNZ mloop8
	MOVSS scale+40(FP), X4
	SHUFPS $0, X4, X4
	MULPS X4, X0
	MULPS X4, X1
	MOVUPS X0, 0(DI)
	MOVUPS X1, 16(DI)
	RET

// func matRow16NB(dst, in, w *float32, k, wRowBytes int, scale float32)
// matRow16 without a branch on in[i]: each product is
// masked to +0 where in[i] == 0 (adding +0 to a sum that started at +0
// changes no bit), so the result is the skipping loop's; for short rows
// (hidden layers), where half the inputs are zeros after a ReLU and the
// skip branch is a coin toss.
TEXT ·matRow16NB(SB), NOSPLIT, $0-44
	MOVQ dst+0(FP), DI
	MOVQ in+8(FP), SI
	MOVQ w+16(FP), DX
	MOVQ k+24(FP), CX
	MOVQ wRowBytes+32(FP), R8
	XORPS X0, X0
	XORPS X1, X1
	XORPS X2, X2
	XORPS X3, X3
	XORPS X8, X8
matrow16nbloop:
	MOVSS (SI), X4
	SHUFPS $0, X4, X4
	MOVAPS X4, X10
	CMPPS X8, X10, $4 // all ones where in[i] != 0 (NaN included)
	MOVUPS 0(DX), X5
	MOVUPS 16(DX), X6
	MOVUPS 32(DX), X7
	MOVUPS 48(DX), X9
	MULPS X4, X5
	MULPS X4, X6
	MULPS X4, X7
	MULPS X4, X9
	ANDPS X10, X5
	ANDPS X10, X6
	ANDPS X10, X7
	ANDPS X10, X9
	ADDPS X5, X0
	ADDPS X6, X1
	ADDPS X7, X2
	ADDPS X9, X3
	ADDQ $4, SI
	ADDQ R8, DX
	DECQ CX
	JNZ matrow16nbloop
	MOVSS scale+40(FP), X4
	SHUFPS $0, X4, X4
	MULPS X4, X0
	MULPS X4, X1
	MULPS X4, X2
	MULPS X4, X3
	MOVUPS X0, 0(DI)
	MOVUPS X1, 16(DI)
	MOVUPS X2, 32(DI)
	MOVUPS X3, 48(DI)
	RET

// func matRow8NB(dst, in, w *float32, k, wRowBytes int, scale float32)
// matRow8 without a branch on in[i]: each product is
// masked to +0 where in[i] == 0 (adding +0 to a sum that started at +0
// changes no bit), so the result is the skipping loop's; for short rows
// (hidden layers), where half the inputs are zeros after a ReLU and the
// skip branch is a coin toss.
TEXT ·matRow8NB(SB), NOSPLIT, $0-44
	MOVQ dst+0(FP), DI
	MOVQ in+8(FP), SI
	MOVQ w+16(FP), DX
	MOVQ k+24(FP), CX
	MOVQ wRowBytes+32(FP), R8
	XORPS X0, X0
	XORPS X1, X1
	XORPS X8, X8
matrow8nbloop:
	MOVSS (SI), X4
	SHUFPS $0, X4, X4
	MOVAPS X4, X10
	CMPPS X8, X10, $4 // all ones where in[i] != 0 (NaN included)
	MOVUPS 0(DX), X5
	MOVUPS 16(DX), X6
	MULPS X4, X5
	MULPS X4, X6
	ANDPS X10, X5
	ANDPS X10, X6
	ADDPS X5, X0
	ADDPS X6, X1
	ADDQ $4, SI
	ADDQ R8, DX
	DECQ CX
	JNZ matrow8nbloop
	MOVSS scale+40(FP), X4
	SHUFPS $0, X4, X4
	MULPS X4, X0
	MULPS X4, X1
	MOVUPS X0, 0(DI)
	MOVUPS X1, 16(DI)
	RET
