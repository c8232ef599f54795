/* placeholder, replaced by the comrope implementation */
#include "vitrain/pe.h"
static VtCode pending(const PeOptions *o, const PeGeometry *g, VtError *err) { (void)g; return vt_fail(err, VT_ERR_ARGUMENT, "pe.type %s is not built yet", o->type); }
const PeKind PE_COMROPE_AP = {.name = "comrope_ap", .check = pending};
const PeKind PE_COMROPE_LD = {.name = "comrope_ld", .check = pending};
