"""Special tokens at fixed ids at the start of the vocabulary (DESIGN.md). Imported by the trainer,
so it depends on nothing."""

PAD, UNK, EOS, MASK, GMASK, SMASK, SOP, EOP = range(8)

SPECIAL_TOKENS = {
    PAD: "<pad>",
    UNK: "<unk>",
    EOS: "<eos>",  # document end
    MASK: "[MASK]",  # short blank (GLM)
    GMASK: "[gMASK]",  # generate the rest (GLM)
    SMASK: "[sMASK]",  # sentence blank (GLM; reserved)
    SOP: "<sop>",  # start of a Part B piece
    EOP: "<eop>",  # end of a Part B piece
}
NUM_SPECIAL = len(SPECIAL_TOKENS)
