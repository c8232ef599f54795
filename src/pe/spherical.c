/* placeholder, replaced by the spherical implementation */
#include "vitrain/pe.h"
static VtCode pending(const PeOptions *o, const PeGeometry *g, VtError *err) { (void)g; return vt_fail(err, VT_ERR_ARGUMENT, "pe.type %s is not built yet", o->type); }
const PeKind PE_SPHERICAL = {.name = "spherical", .check = pending};
